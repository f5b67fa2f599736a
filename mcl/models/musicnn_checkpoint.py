"""The four checkpoints shipped inside the `musicnn` wheel, read into the
Flax models of `mcl.models.pons_musicnn`.

The wheel (0.1.0, ISC licence) holds `musicnn/<name>/` for `MTT_musicnn`,
`MTT_vgg` (trained on MagnaTagATune) and `MSD_musicnn`, `MSD_vgg`
(Million Song Dataset): a TF1 checkpoint whose prefix is the folder itself
(files `.index`, `.data-00000-of-00001`, `.meta`; the `checkpoint` file
points to the author's disk and is ignored), `config.json` and
`experiment.result`. It is installed by `launch/setup.sh` with
`--no-deps` (its numpy<1.17 pin is stale); it is only read here, never
imported as code, and nothing is downloaded at run time.

TF kernels are [height, width, in, out] and [in, out], as Flax's; the
mid-end convs of musicnn span all input channels ([7, C, 1, 64]) and
become 1D kernels [7, C, 64]. The VGG pooling is read from each `.meta`
graph, because the package's `models.py` builds MSD_vgg with MTT_vgg's.
"""

import dataclasses
import importlib.util
import json
import os

import numpy as np

from mcl.models import pons_musicnn
from mcl.runtime import errors

CHECKPOINTS = ("MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg")
INSTALL = "pip install --no-deps musicnn==0.1.0 (or bash launch/setup.sh)"

# Flax layer -> TF variable scope, in the order the package creates them.
_MUSICNN_SCOPES = {
  "input_bn": "batch_normalization",
  "timbral_4": "conv2d",
  "timbral_4_bn": "batch_normalization_1",
  "timbral_7": "conv2d_1",
  "timbral_7_bn": "batch_normalization_2",
  "temporal_128": "conv2d_2",
  "temporal_128_bn": "batch_normalization_3",
  "temporal_64": "conv2d_3",
  "temporal_64_bn": "batch_normalization_4",
  "temporal_32": "conv2d_4",
  "temporal_32_bn": "batch_normalization_5",
  "midend_0": "conv2d_5",
  "midend_0_bn": "batch_normalization_6",
  "midend_1": "conv2d_6",
  "midend_1_bn": "batch_normalization_7",
  "midend_2": "conv2d_7",
  "midend_2_bn": "batch_normalization_8",
  "pool_bn": "batch_normalization_9",
  "dense": "dense",
  "dense_bn": "batch_normalization_10",
  "output": "dense_1",
}
_VGG_SCOPES = {
  "input_bn": "batch_normalization",
  **{f"conv{i}": f"{i}CNN" for i in range(1, 6)},
  **{f"conv{i}_bn": f"batch_normalization_{i}" for i in range(1, 6)},
  "output": "dense",
}


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """A shipped checkpoint as a Flax model.

  Attributes:
    name: one of `CHECKPOINTS`.
    model: `PonsMusicnn` or `PonsVGG` with the checkpoint's widths and
      pooling.
    variables: {"params": ..., "batch_stats": ...} numpy float32 trees.
    tags: the 50 tag names in output order (the package's `MTT_LABELS` or
      `MSD_LABELS`; MTT's order swaps positions 47 and 48 against the Won
      et al. top-50 list in `mcl.datasets`).
    embedding: the sown feature used as the encoder's embedding:
      "penultimate" (musicnn, 200-d) or "pool5" (vgg, 256-d flattened).
    folder: where the checkpoint was read from.
  """

  name: str
  model: object
  variables: dict
  tags: tuple[str, ...]
  embedding: str
  folder: str


def package_folder() -> str:
  """The installed `musicnn` package's folder (found, not imported).

  Raises:
    mcl.runtime.errors.MissingDataError: the package is not installed (the
      message gives the install command).
  """
  spec = importlib.util.find_spec("musicnn")
  if spec is None or not spec.submodule_search_locations:
    raise errors.MissingDataError(
      f"the pretrained musicnn checkpoints need the musicnn package: {INSTALL}"
    )
  return list(spec.submodule_search_locations)[0]


def checkpoint_folder(name: str) -> str:
  """`<package>/<name>/`, checked.

  Raises:
    mcl.runtime.errors.UserError: `name` is not one of `CHECKPOINTS`.
    mcl.runtime.errors.MissingDataError: the package or the checkpoint's files
      are missing.
  """
  if name not in CHECKPOINTS:
    raise errors.UserError(
      f"unknown pretrained model {name!r}; known: {', '.join(CHECKPOINTS)}"
    )
  folder = os.path.join(package_folder(), name)
  missing = [
    os.path.join(folder, f)
    for f in (".index", ".meta", ".data-00000-of-00001", "config.json")
    if not os.path.isfile(os.path.join(folder, f))
  ]
  if missing:
    raise errors.MissingDataError(
      f"musicnn checkpoint {name} incomplete, missing {', '.join(missing)}; "
      f"reinstall: {INSTALL}"
    )
  return folder


def graph_pools(folder: str) -> tuple:
  """The max-pool windows and strides of a checkpoint's `.meta` graph.

  Returns:
    ((window_t, window_f), (stride_t, stride_f)) per `model/max_pooling2d*`
    node, in layer order.
  """
  import tensorflow as tf

  meta = tf.compat.v1.MetaGraphDef()
  with open(os.path.join(folder, ".meta"), "rb") as f:
    meta.ParseFromString(f.read())
  pools = {}
  for node in meta.graph_def.node:
    if node.op == "MaxPool" and node.name.startswith("model/max_pooling2d"):
      suffix = node.name.split("/")[1].removeprefix("max_pooling2d")
      index = int(suffix.lstrip("_")) if suffix else 0
      window = list(node.attr["ksize"].list.i)[1:3]
      strides = list(node.attr["strides"].list.i)[1:3]
      pools[index] = (tuple(window), tuple(strides))
  return tuple(pools[i] for i in sorted(pools))


def _tags(name: str) -> tuple[str, ...]:
  with open(os.path.join(package_folder(), "configuration.py")) as f:
    source = f.read()
  namespace = {}
  # configuration.py is constants only (no imports); read, don't import.
  exec(compile(source, "musicnn/configuration.py", "exec"), namespace)
  return tuple(
    namespace["MTT_LABELS" if name.startswith("MTT") else "MSD_LABELS"]
  )


def load(name: str) -> Pretrained:
  """One shipped checkpoint as a Flax model and its variables.

  Args:
    name: "MTT_musicnn", "MSD_musicnn", "MTT_vgg" or "MSD_vgg".

  Returns:
    A `Pretrained`; `model.apply(variables, x, train=False)` of float32
    [B, 187, 96] musicnn log-mel patches gives the checkpoint's logits.

  Raises:
    mcl.runtime.errors.UserError, mcl.runtime.errors.MissingDataError: see
      `checkpoint_folder`.
  """
  from tensorflow.python.training import py_checkpoint_reader

  folder = checkpoint_folder(name)
  with open(os.path.join(folder, "config.json")) as f:
    num_classes = int(json.load(f)["num_classes_dataset"])
  # The prefix is the folder itself: its files are named ".index" etc.
  reader = py_checkpoint_reader.NewCheckpointReader(folder + os.sep)
  if name.endswith("vgg"):
    model = pons_musicnn.PonsVGG(
      num_classes=num_classes, pools=graph_pools(folder)
    )
    scopes, embedding = _VGG_SCOPES, "pool5"
  else:
    shapes = reader.get_variable_to_shape_map()
    width, units = shapes["conv2d_5/kernel"][-1], shapes["dense/kernel"][-1]
    model = pons_musicnn.PonsMusicnn(
      num_classes=num_classes, midend_width=width, backend_width=units
    )
    scopes, embedding = _MUSICNN_SCOPES, "penultimate"
  params, stats = {}, {}
  for layer, scope in scopes.items():

    def get(variable, scope=scope):
      return reader.get_tensor(f"{scope}/{variable}").astype(np.float32)

    if layer.endswith("bn"):
      params[layer] = {"scale": get("gamma"), "bias": get("beta")}
      stats[layer] = {"mean": get("moving_mean"), "var": get("moving_variance")}
    else:
      kernel = get("kernel")
      if layer.startswith("midend"):
        kernel = kernel[:, :, 0, :]
      params[layer] = {"kernel": kernel, "bias": get("bias")}
  return Pretrained(
    name=name,
    model=model,
    variables={"params": params, "batch_stats": stats},
    tags=_tags(name),
    embedding=embedding,
    folder=folder,
  )


def trainable_count(folder: str) -> int:
  """Number of trainable values in a checkpoint: every variable but the
  BatchNorm moving statistics, Adam's slots and its beta powers."""
  from tensorflow.python.training import py_checkpoint_reader

  reader = py_checkpoint_reader.NewCheckpointReader(folder + os.sep)
  return sum(
    int(np.prod(shape))
    for key, shape in reader.get_variable_to_shape_map().items()
    if "Adam" not in key and "moving_" not in key and not key.startswith("beta")
  )


def folded(pretrained: Pretrained, rename) -> dict:
  """A musicnn checkpoint's trunk as the parameters of
  `pons_musicnn.musicnn_trunk` with `Affine` norms: every inference-mode
  BatchNorm folded into a per-channel scale and bias (scale / sqrt(var +
  1e-3), bias - mean x that), the output layer dropped.

  Args:
    pretrained: a musicnn (not vgg) checkpoint from `load`.
    rename: the trunk's name of a checkpoint layer (`musicnn_trunk`'s).

  Returns:
    {rename(layer): {"kernel", "bias"} or {"scale", "bias"}} float32.

  Raises:
    mcl.runtime.errors.UserError: a vgg checkpoint.
  """
  if not isinstance(pretrained.model, pons_musicnn.PonsMusicnn):
    raise errors.UserError(
      f"{pretrained.name}: only the musicnn checkpoints are fine-tuned as "
      "a trunk"
    )
  params, stats = (
    pretrained.variables["params"],
    pretrained.variables["batch_stats"],
  )
  out = {}
  for layer, group in params.items():
    if layer == "output":
      continue
    if layer in stats:
      scale = group["scale"] / np.sqrt(stats[layer]["var"] + 1e-3)
      bias = group["bias"] - stats[layer]["mean"] * scale
      group = {"scale": scale, "bias": bias}
    out[rename(layer)] = {
      k: np.asarray(v, np.float32) for k, v in group.items()
    }
  return out
