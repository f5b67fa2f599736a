"""Frozen pretrained encoders: a musicnn package checkpoint and one of its
layers as a fixed embedding of 3-s log-mel patches.

The four checkpoints (`mcl.models.musicnn_checkpoint`) sow their
intermediate features; a layer of `LAYERS` turns them into one vector per
patch. Time-distributed features (the front end, the mid end, VGG's pool
maps) are summarised by max and mean over their time (and frequency)
positions, concatenated, as the package's own back end pools its mid end.
`DEFAULT_LAYERS` is each encoder's layer chosen by validation-fold probe
accuracy (BUILD_NOTES.md, "Encoder layers"; `launch/probe_layers.py`).

Embedding is batched, jitted once per encoder and layer, and split over
every local device along the batch.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mcl.features import logmel, patches
from mcl.models import musicnn_checkpoint
from mcl.runtime import errors

# The record front end's choices: none keeps the log-mel records.
ENCODERS = ("none", *musicnn_checkpoint.CHECKPOINTS)


def _max_mean(x: jnp.ndarray) -> jnp.ndarray:
  """[B, positions..., C] -> [B, 2 C]: max and mean over the positions."""
  axes = tuple(range(1, x.ndim - 1))
  return jnp.concatenate([x.max(axes), x.mean(axes)], axis=-1)


def _get(name: str) -> Callable[[dict], jnp.ndarray]:
  return lambda sown: sown[name][0]


# Layer name -> its [B, D] embedding from the sown intermediates.
MUSICNN_LAYERS: dict[str, Callable[[dict], jnp.ndarray]] = {
  # The 200-d dense layer after pooling (after its BatchNorm).
  "penultimate": _get("penultimate"),
  # Max, mean, and both, over time of the concatenated front and mid end
  # (753 channels each), before the pooled BatchNorm.
  "max_pool": _get("max_pool"),
  "mean_pool": _get("mean_pool"),
  "max_mean_pool": lambda s: jnp.concatenate(
    [s["max_pool"][0], s["mean_pool"][0]], -1
  ),
  # The last mid-end layer (64 channels), max and mean over time.
  "cnn3_max_mean": lambda s: _max_mean(s["cnn3"][0]),
}
VGG_LAYERS: dict[str, Callable[[dict], jnp.ndarray]] = {
  # The last pool map flattened (the output layer's input, 256-d).
  "pool5": lambda s: s["pool5"][0].reshape(s["pool5"][0].shape[0], -1),
  "pool5_max_mean": lambda s: _max_mean(s["pool5"][0]),
  "pool4_max_mean": lambda s: _max_mean(s["pool4"][0]),
  "pool3_max_mean": lambda s: _max_mean(s["pool3"][0]),
}
# Chosen by validation-fold probe accuracy (BUILD_NOTES.md).
DEFAULT_LAYERS = {
  "MTT_musicnn": "cnn3_max_mean",
  "MSD_musicnn": "penultimate",
  "MTT_vgg": "pool5_max_mean",
  "MSD_vgg": "pool5_max_mean",
}


def layers_of(name: str) -> dict[str, Callable[[dict], jnp.ndarray]]:
  """The layers an encoder offers (`MUSICNN_LAYERS` or `VGG_LAYERS`)."""
  return VGG_LAYERS if name.endswith("vgg") else MUSICNN_LAYERS


def resolve_layer(name: str, layer: str) -> str:
  """`layer`, or the encoder's default for "" or "default".

  Raises:
    mcl.runtime.errors.UserError: an unknown encoder or layer (the message
      lists the known ones).
  """
  if name not in musicnn_checkpoint.CHECKPOINTS:
    raise errors.UserError(
      f"data.encoder={name!r}: known encoders are {list(ENCODERS)}"
    )
  if layer in ("", "default"):
    return DEFAULT_LAYERS[name]
  if layer not in layers_of(name):
    raise errors.UserError(
      f"data.encoder_layer={layer!r}: {name} has layers "
      f"{sorted(layers_of(name))}"
    )
  return layer


@functools.cache
def _checkpoint(name: str) -> musicnn_checkpoint.Pretrained:
  """`musicnn_checkpoint.load`, once per process."""
  return musicnn_checkpoint.load(name)


def _sown(pretrained, x_BxTxF: jnp.ndarray) -> dict:
  """The intermediates a checkpoint sows on a batch of patches."""
  _, sown = pretrained.model.apply(
    pretrained.variables, x_BxTxF, train=False, mutable=["intermediates"]
  )
  return sown["intermediates"]


@functools.cache
def embedding_dimension(name: str, layer: str) -> int:
  """D of an encoder's layer, by abstract evaluation (nothing computed).

  Raises:
    mcl.runtime.errors.UserError: see `resolve_layer`.
  """
  layer = resolve_layer(name, layer)
  pretrained = _checkpoint(name)
  shape = jax.eval_shape(
    lambda x: layers_of(name)[layer](_sown(pretrained, x)),
    jax.ShapeDtypeStruct(
      (1, logmel.MUSICNN_PATCH_FRAMES, logmel.MUSICNN_BANDS), jnp.float32
    ),
  ).shape
  return int(shape[-1])


class Encoder:
  """A checkpoint's layers as a jitted, batched, device-parallel embedding.

  Attributes:
    name: the checkpoint (`musicnn_checkpoint.CHECKPOINTS`).
    layers: the layers computed, in order.
    batch_size: patches per call (a multiple of the local devices).
  """

  def __init__(self, name: str, layers: tuple[str, ...], batch_size: int = 64):
    """Args: the checkpoint; its layers (names of `layers_of(name)`, each
    resolved by `resolve_layer`); patches per jitted call, rounded up to a
    multiple of the local devices.

    Raises:
      mcl.runtime.errors.UserError, mcl.runtime.errors.MissingDataError:
        an unknown encoder or layer, or the musicnn package is missing.
    """
    self.name = name
    self.layers = tuple(resolve_layer(name, layer) for layer in layers)
    pretrained = _checkpoint(name)
    devices = jax.local_devices()
    self.batch_size = -(-batch_size // len(devices)) * len(devices)
    self._sharding = NamedSharding(
      Mesh(np.asarray(devices), ("batch",)), PartitionSpec("batch")
    )
    offered = layers_of(name)

    def embed(x_BxTxF):
      sown = _sown(pretrained, x_BxTxF)
      return [offered[layer](sown) for layer in self.layers]

    self._embed = jax.jit(embed)

  def embed(self, patches_NxTxF: np.ndarray, progress: bool = False) -> list:
    """Every layer's embedding of a stack of patches.

    Args:
      patches_NxTxF: float32 [N, 187, 96] musicnn log-mel patches
        (`mcl.features.logmel.musicnn_log_mel`, `patches.cut`).
      progress: show a tqdm bar over the batches.

    Returns:
      One float32 [N, D_layer] numpy array per layer of `layers`. The last
      batch is zero-padded to `batch_size` (one compilation) and cut.
    """
    n = patches_NxTxF.shape[0]
    out = [[] for _ in self.layers]
    starts = range(0, n, self.batch_size)
    for start in tqdm.tqdm(starts, desc=self.name, disable=not progress):
      batch = patches_NxTxF[start : start + self.batch_size]
      rows = batch.shape[0]
      batch = np.pad(batch, ((0, self.batch_size - rows), (0, 0), (0, 0)))
      values = self._embed(jax.device_put(batch, self._sharding))
      for i, value in enumerate(values):
        out[i].append(np.asarray(value, np.float32)[:rows])
    return [np.concatenate(parts) for parts in out]

  def embed_clip(self, log_mel_TxF: np.ndarray, hop: int) -> list:
    """Every layer's embedding of one clip's patches.

    Args:
      log_mel_TxF: float32 [frames, 96] musicnn log-mel of the clip.
      hop: frames between patch starts (`patches.hop_frames`).

    Returns:
      One float32 [patches, D_layer] array per layer.
    """
    cut = patches.cut(log_mel_TxF, logmel.MUSICNN_PATCH_FRAMES, hop)
    return self.embed(cut)
