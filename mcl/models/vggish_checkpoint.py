"""The published VGGish weights, read into the Flax tree of
`mcl.models.vggish.VGGish`.

The AudioSet release ships a TF-Slim checkpoint, `vggish_model.ckpt`
(variables `vggish/conv1/weights`, `vggish/conv3/conv3_1/biases`, ...,
`vggish/fc2/weights`), and the postprocessor's PCA,
`vggish_pca_params.npz` (`pca_eigen_vectors` [128, 128], `pca_means`
[128, 1]). Both are read locally; nothing is downloaded at run time. TF
kernels are [height, width, in, out] and [in, out], as Flax's.
"""

import os

import numpy as np
import tensorflow as tf

from mcl.models import vggish
from mcl.runtime import errors

CHECKPOINT = "vggish_model.ckpt"
PCA_PARAMS = "vggish_pca_params.npz"
_URL = "https://storage.googleapis.com/audioset/"
DOWNLOAD = (
  f"download {_URL}{CHECKPOINT} and {_URL}{PCA_PARAMS} (the AudioSet "
  "VGGish release, tensorflow/models research/audioset/vggish) into that "
  "folder"
)


def scope(name: str) -> str:
  """The TF variable scope of a Flax layer name: "conv3_1" ->
  "vggish/conv3/conv3_1", "fc2" -> "vggish/fc2"."""
  group = name.split("_")[0]
  return f"vggish/{group}/{name}" if "_" in name else f"vggish/{name}"


def load(directory: str) -> dict:
  """The VGGish parameters of the release in `directory`.

  Args:
    directory: a folder with `vggish_model.ckpt` (its .index and .data
      files, or the single V1 file) and `vggish_pca_params.npz`.

  Returns:
    {"conv1": {"kernel", "bias"}, ..., "fc2": {...}, "pca_eigen_vectors":
    float32 [128, 128], "pca_means": float32 [128]}, numpy arrays.

  Raises:
    mcl.runtime.errors.MissingDataError: a file is missing (the message says
      where to download it).
  """
  checkpoint = os.path.join(directory, CHECKPOINT)
  pca_path = os.path.join(directory, PCA_PARAMS)
  missing = []
  if not any(os.path.exists(checkpoint + s) for s in ("", ".index")):
    missing.append(checkpoint)
  if not os.path.exists(pca_path):
    missing.append(pca_path)
  if missing:
    raise errors.MissingDataError(
      f"VGGish weights missing: {', '.join(missing)}; {DOWNLOAD}, then pass "
      f"--config.model.pretrained={directory}"
    )
  reader = tf.train.load_checkpoint(checkpoint)
  params = {
    name: {
      "kernel": reader.get_tensor(f"{scope(name)}/weights"),
      "bias": reader.get_tensor(f"{scope(name)}/biases"),
    }
    for name in (*vggish.CONV_NAMES, *vggish.FC_NAMES, "fc2")
  }
  with np.load(pca_path) as pca:
    params["pca_eigen_vectors"] = pca["pca_eigen_vectors"].astype(np.float32)
    params["pca_means"] = pca["pca_means"].reshape(-1).astype(np.float32)
  return params


def into(variables: dict, directory: str, path=("vggish",)) -> dict:
  """`variables` with the VGGish subtree at `params[path]` replaced by the
  release's weights.

  Args:
    variables: {"params": ..., ...} of a model holding a `VGGish`.
    directory: see `load`.
    path: where the VGGish module sits in the parameter tree (() when
      the model is a bare `VGGish`).

  Returns:
    A new variables dict (the others unchanged).

  Raises:
    mcl.runtime.errors.MissingDataError: see `load`.
    mcl.runtime.errors.UserError: the model's VGGish widths differ from the
      checkpoint's (the message names the first parameter that differs).
  """
  current = variables["params"]
  for key in path:
    current = current[key]
  loaded = load(directory)
  for name, value in loaded.items():
    target = current[name]
    pairs = value.items() if isinstance(value, dict) else [(None, value)]
    for key, array in pairs:
      want = np.shape(target[key] if key else target)
      if array.shape != want:
        raise errors.UserError(
          f"VGGish {name}/{key or ''}: checkpoint {array.shape}, model "
          f"{want}; use the release's widths"
        )
  return {**variables, "params": _replace(variables["params"], path, loaded)}


def _replace(tree: dict, path: tuple[str, ...], value) -> dict:
  """A copy of `tree` with the subtree at `path` set to `value`."""
  if not path:
    return value
  return {**tree, path[0]: _replace(tree[path[0]], path[1:], value)}
