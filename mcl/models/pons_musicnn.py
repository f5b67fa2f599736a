"""The pretrained taggers of the `musicnn` package (Pons & Serra 2019,
"musicnn: pre-trained convolutional neural networks for music audio
tagging", ISMIR LBD; package `musicnn` 0.1.0, `models.py`), in Flax.

These are Pons's networks exactly as his four shipped checkpoints
(`MTT_musicnn`, `MSD_musicnn`, `MTT_vgg`, `MSD_vgg`) were trained, so that
`mcl.models.musicnn_checkpoint` can load them. They differ from the Won et
al. 2020 re-implementation in `mcl.models.musicnn`: every conv is conv ->
ReLU -> BatchNorm (not BN -> ReLU), the temporal filters run on every mel
band and are max-pooled over frequency (not on the band mean), the
timbral filters are int(0.4 * 96) = 38 and int(0.7 * 96) = 67 bands high,
and the pooled features interleave max and mean per channel. BatchNorm is
TF1's: epsilon 1e-3, momentum 0.99.

Inputs are the musicnn front end (`mcl.features.logmel.musicnn_log_mel`):
float32 [batch, 187, 96], log10(1 + 10000 mel power), 3 s at 16 kHz, hop
256.
Intermediate outputs are sown into the "intermediates" collection under
the package's feature names (`penultimate`, `pool5`, ...): apply with
`mutable=["intermediates"]` to read them.
"""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

# The patch the checkpoints were trained on: 187 frames x 96 mel bands.
PATCH_FRAMES = 187
BANDS = 96


def _batch_norm(train: bool, name: str) -> nn.BatchNorm:
  """TF1 `tf.layers.batch_normalization` defaults."""
  return nn.BatchNorm(
    use_running_average=not train, momentum=0.99, epsilon=1e-3, name=name
  )


def _max(x: jnp.ndarray, axis: int) -> jnp.ndarray:
  """`x.max(axis)` whose gradient goes to one maximum (the first).

  `jnp.max`'s gradient divides by the count of elements equal to the
  maximum; under jit XLA may recompute the operand in two fusions that
  round differently, find no element equal, and divide by zero (seen:
  NaN gradients through this trunk on CPU). Gathering at the argmax has
  the same value and no division.
  """
  index = jnp.expand_dims(jnp.argmax(x, axis=axis), axis)
  return jnp.take_along_axis(x, index, axis=axis).squeeze(axis)


class Affine(nn.Module):
  """x * scale + bias per channel: an inference-mode BatchNorm with its
  moving statistics folded into `scale` and `bias`
  (`mcl.models.musicnn_checkpoint.folded`), so that it trains as plain
  parameters and no statistic moves between tasks."""

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """x: float32 [..., C] -> [..., C]."""
    channels = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (channels,))
    bias = self.param("bias", nn.initializers.zeros, (channels,))
    return x * scale + bias


def musicnn_trunk(
  x_BxTxF: jnp.ndarray,
  *,
  norm: Callable[[str], nn.Module],
  dropout: Callable[[jnp.ndarray], jnp.ndarray],
  sow: Callable[[str, jnp.ndarray], None],
  rename: Callable[[str], str] = lambda name: name,
  midend_width: int = 64,
  backend_width: int = 200,
  frontend_scale: float = 1.6,
) -> jnp.ndarray:
  """musicnn's layers up to the penultimate, created in the calling
  module's scope (called from a compact method), layer `l` named
  `rename(l)` (the checkpoint's names: `input_bn`, `timbral_4`, ...).

  Args:
    x_BxTxF: float32 [batch, frames, 96] musicnn log-mel.
    norm: the normalisation layer of a name (BatchNorm or `Affine`).
    dropout: applied to the pooled features.
    sow: records an intermediate feature (name, value).
    rename: a layer's name in the calling module.
    midend_width, backend_width, frontend_scale: `PonsMusicnn`'s.

  Returns:
    float32 [batch, backend_width]: the penultimate (after its norm).
  """
  bands = x_BxTxF.shape[-1]
  h_BxTxFx1 = norm(rename("input_bn"))(x_BxTxF[..., None])
  front = []
  timbral = int(frontend_scale * 128)
  for fraction in (0.4, 0.7):
    height = int(fraction * bands)
    name = f"timbral_{int(fraction * 10)}"
    h = jnp.pad(h_BxTxFx1, ((0, 0), (3, 3), (0, 0), (0, 0)))
    conv = nn.Conv(timbral, (7, height), padding="VALID", name=rename(name))
    front.append(_max(norm(rename(f"{name}_bn"))(nn.relu(conv(h))), 2))
  temporal = int(frontend_scale * 32)
  for length in (128, 64, 32):
    name = f"temporal_{length}"
    conv = nn.Conv(temporal, (length, 1), padding="SAME", name=rename(name))
    h = nn.relu(conv(h_BxTxFx1))
    front.append(_max(norm(rename(f"{name}_bn"))(h), 2))
  front_BxTxC = jnp.concatenate(front, axis=-1)
  sow("timbral", jnp.concatenate(front[:2], -1))
  sow("temporal", jnp.concatenate(front[2:], -1))

  stages = [front_BxTxC]
  h = front_BxTxC
  for i in range(3):
    # A conv spanning every channel of its input, i.e. a 1D conv in time.
    name = f"midend_{i}"
    c = nn.Conv(midend_width, (7,), padding=((3, 3),), name=rename(name))(h)
    c = norm(rename(f"{name}_bn"))(nn.relu(c))
    h = c if i == 0 else c + h
    sow(f"cnn{i + 1}", h)
    stages.append(h)
  h_BxTxC = jnp.concatenate(stages, axis=-1)

  max_BxC = _max(h_BxTxC, 1)
  mean_BxC = h_BxTxC.mean(axis=1)
  sow("max_pool", max_BxC)
  sow("mean_pool", mean_BxC)
  # tf.concat([max, mean], 2) of [B, C, 1] maps, then flatten.
  pooled = jnp.stack([max_BxC, mean_BxC], axis=-1).reshape(h_BxTxC.shape[0], -1)
  pooled = dropout(norm(rename("pool_bn"))(pooled))
  dense = nn.relu(nn.Dense(backend_width, name=rename("dense"))(pooled))
  penultimate = norm(rename("dense_bn"))(dense)
  sow("penultimate", penultimate)
  return penultimate


class PonsMusicnn(nn.Module):
  """musicnn (`build_musicnn` of the package): musically motivated front
  end, dense mid end with residuals, temporal pooling back end.

  Shapes for a [B, T, 96] input: front end [B, T, 561] (2 x 204 timbral,
  3 x 51 temporal), mid end 3 x [B, T, midend_width], pooled [B, 2 x 753]
  (max and mean per channel, interleaved), penultimate [B, backend_width].
  T is any number of frames >= 1 (the checkpoints saw 187).

  Attributes:
    num_classes: tags (50 for every shipped checkpoint).
    midend_width: filters of each mid-end conv (64; 512 for the unshipped
      `MSD_musicnn_big`).
    backend_width: units of the penultimate dense layer (200; 500 big).
    frontend_scale: the package's `num_filt` (1.6): 204 timbral and 51
      temporal filters per conv.
    dropout_rate: before the penultimate and the output layer.
  """

  num_classes: int = 50
  midend_width: int = 64
  backend_width: int = 200
  frontend_scale: float = 1.6
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x_BxTxF: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Tag logits.

    Args:
      x_BxTxF: float32 [batch, frames, 96] musicnn log-mel.
      train: batch statistics and dropout on.

    Returns:
      float32 [batch, num_classes] logits (the package's taggram is their
      sigmoid).
    """
    dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
    penultimate = musicnn_trunk(
      x_BxTxF,
      norm=lambda name: _batch_norm(train, name),
      dropout=dropout,
      sow=lambda name, value: self.sow("intermediates", name, value),
      midend_width=self.midend_width,
      backend_width=self.backend_width,
      frontend_scale=self.frontend_scale,
    )
    return nn.Dense(self.num_classes, name="output")(dropout(penultimate))


class PonsVGG(nn.Module):
  """The package's `vgg`: five 3x3 conv -> ReLU -> BN -> max-pool blocks
  on the spectrogram image, then a linear output layer.

  The pooling differs between the shipped checkpoints (read from each
  graph by `mcl.models.musicnn_checkpoint`): MTT_vgg pools [4,1]/2 then
  [2,2] thrice then [4,4]; MSD_vgg pools [4,1]/[4,1] then [1,4]/[1,4] (the
  package's `models.py` gets MSD_vgg wrong). For a [B, 187, 96] input both
  end in pool5 [B, 2, 1, 128] = 256 features.

  Attributes:
    num_classes: tags.
    width: filters of every conv (128).
    pools: ((window_t, window_f), (stride_t, stride_f)) of each of the five
      max-pools (VALID padding).
    dropout_rate: after pools 1-4 (the flattened pool5 gets 0.5).
  """

  num_classes: int = 50
  width: int = 128
  pools: Sequence[tuple[tuple[int, int], tuple[int, int]]] = (
    ((4, 1), (2, 2)),
    ((2, 2), (2, 2)),
    ((2, 2), (2, 2)),
    ((2, 2), (2, 2)),
    ((4, 4), (4, 4)),
  )
  dropout_rate: float = 0.25

  @nn.compact
  def __call__(self, x_BxTxF: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Tag logits.

    Args:
      x_BxTxF: float32 [batch, 187, 96] musicnn log-mel (the output layer
        fixes the size after pool5).
      train: batch statistics and dropout on.

    Returns:
      float32 [batch, num_classes] logits.
    """
    h = _batch_norm(train, "input_bn")(x_BxTxF[..., None])
    for i, (window, strides) in enumerate(self.pools, start=1):
      if i > 1:
        h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
      h = nn.relu(
        nn.Conv(self.width, (3, 3), padding="SAME", name=f"conv{i}")(h)
      )
      h = _batch_norm(train, f"conv{i}_bn")(h)
      h = nn.max_pool(h, tuple(window), tuple(strides), padding="VALID")
      self.sow("intermediates", f"pool{i}", h)
    flat = h.reshape(h.shape[0], -1)
    flat = nn.Dropout(0.5, deterministic=not train)(flat)
    return nn.Dense(self.num_classes, name="output")(flat)
