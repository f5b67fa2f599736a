"""Blocks shared by two or more models of the music-tagging zoo.

The zoo follows the PyTorch implementation of Won et al. 2020, "Evaluation
of CNN-based automatic music tagging models" (SMC 2020; reference code
`minzwon/sota-music-tagging-models`, `training/modules.py`). Layouts are
channels-last and time-first: spectrogram maps are [batch, frames, mels,
channels] and 1D maps [batch, steps, channels], where the reference uses
[batch, channels, mels, frames] and [batch, channels, steps]. Kernels and
pooling windows are therefore written (time, frequency).

BatchNorm uses torch's defaults (momentum 0.1 on the new batch, i.e. flax
momentum 0.9 on the running average; epsilon 1e-5) and keeps its running
statistics in the "batch_stats" collection. Dropout draws from the
"dropout" rng.
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def batch_norm(*, train: bool, name: str) -> nn.BatchNorm:
  """BatchNorm over the last axis with torch's default settings.

  Args:
    train: normalise with the batch's statistics and update the running
      ones; otherwise use the running statistics.
    name: the layer's name in the parameter tree.

  Returns:
    An `nn.BatchNorm` to call on [batch, ..., channels] inputs. It must be
    built inside a compact method: the caller becomes its parent.
  """
  return nn.BatchNorm(
    use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name
  )


def _window_split(shape, window):
  """[batch, *spatial, C] -> the cropped spatial sizes and the split shape
  [batch, n_0, w_0, n_1, w_1, ..., C] of reshape + max."""
  spatial = shape[1:-1]
  if len(spatial) != len(window):
    raise ValueError(f"window {window} does not fit input shape {shape}")
  out_sizes = [n // w for n, w in zip(spatial, window, strict=True)]
  split = [shape[0]]
  for n, w in zip(out_sizes, window, strict=True):
    split += [n, w]
  return out_sizes, (*split, shape[-1])


def _pool(x, window):
  out_sizes, split = _window_split(x.shape, window)
  crop = (slice(None),) + tuple(
    slice(0, n * w) for n, w in zip(out_sizes, window, strict=True)
  )
  return x[crop].reshape(split).max(axis=tuple(range(2, len(split) - 1, 2)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _disjoint_max_pool(x, window):
  return _pool(x, window)


def _pool_forward(x, window):
  y = _pool(x, window)
  return y, (x, y)


def _pool_backward(window, residuals, g):
  x, y = residuals
  out_sizes, split = _window_split(x.shape, window)
  crop = [n * w for n, w in zip(out_sizes, window, strict=True)]
  # Window maxima broadcast over their windows: [batch, n_0, 1, ..., C].
  expand = tuple(range(2, len(split) - 1, 2))
  y_b, g_b = jnp.expand_dims(y, expand), jnp.expand_dims(g, expand)
  cropped = x[(slice(None), *(slice(0, c) for c in crop))].reshape(split)
  dx = jnp.where(cropped == y_b, g_b, 0.0).reshape(
    (x.shape[0], *crop, x.shape[-1])
  )
  pad = (
    [(0, 0)]
    + [(0, n - c) for n, c in zip(x.shape[1:-1], crop, strict=True)]
    + [(0, 0)]
  )
  return (jnp.pad(dx, pad),)


_disjoint_max_pool.defvjp(_pool_forward, _pool_backward)


def disjoint_max_pool(x: jnp.ndarray, window: Sequence[int]) -> jnp.ndarray:
  """Max pooling with stride equal to the window, as reshape + max.

  Matches torch's `MaxPool1d/2d(window)` (stride = window, no padding):
  trailing positions that do not fill a window are dropped (floor). Its
  gradient (a custom VJP) sends a window's output gradient to every
  position equal to the window's max: one compare-and-select over the
  input, about 2.5x cheaper on CPU than the JAX rule for `max` and much
  cheaper than the select-and-scatter of `flax.linen.max_pool`. Without
  ties the two rules agree; with k tied maxima JAX's splits the gradient
  (1/k each) where this one gives each the whole of it (torch picks one).
  Behind a ReLU a tie is in practice a window of zeros, whose ReLU
  gradient is 0 under every rule.

  Args:
    x: [batch, *spatial, channels] with one spatial axis per window entry.
    window: pooling size along each spatial axis.

  Returns:
    [batch, *(spatial // window), channels], same dtype as `x`.

  Raises:
    ValueError: `window` does not have one entry per spatial axis.
  """
  return _disjoint_max_pool(x, tuple(window))


def squeeze_pooled_axis(x: jnp.ndarray, axis: int, model: str) -> jnp.ndarray:
  """Removes an axis that pooling must have reduced to size 1.

  The reference squeezes these axes, so it only supports inputs whose
  pooled size is exactly 1; other input sizes are rejected here rather
  than silently changing the classifier's input width.

  Args:
    x: any array.
    axis: the axis to remove.
    model: the model's name, for the error message.

  Returns:
    `x` without `axis`.

  Raises:
    ValueError: `x.shape[axis]` is not 1 (the input has the wrong number of
      mel bands, frames or samples for `model`).
  """
  if x.shape[axis] != 1:
    raise ValueError(
      f"{model}: axis {axis} of the pooled map {x.shape} should have size "
      "1; the input has the wrong size for this architecture (see "
      "mcl.models.inputs.PAPER_INPUTS)"
    )
  return jnp.squeeze(x, axis)


class ConvBlock2d(nn.Module):
  """3x3 conv (padding 1) -> BatchNorm -> ReLU -> disjoint max pool.

  The reference's `Conv_2d` (used by FCN, CRNN and the short-chunk CNN).

  Attributes:
    features: output channels.
    pool: max-pool window (time, frequency); odd remainders are dropped.
  """

  features: int
  pool: tuple[int, int]

  @nn.compact
  def __call__(self, x_BxTxFxC: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """[batch, frames, mels, in] -> [batch, frames // pt, mels // pf, out]."""
    x = nn.Conv(self.features, (3, 3), padding=((1, 1), (1, 1)), name="conv")(
      x_BxTxFxC
    )
    x = nn.relu(batch_norm(train=train, name="bn")(x))
    return disjoint_max_pool(x, self.pool)


class ConvBlock1d(nn.Module):
  """1D conv (padding k // 2) -> BatchNorm -> ReLU -> disjoint max pool.

  The reference's `Conv_1d` (used by the Musicnn back-end and the
  sample-level CNN).

  Attributes:
    features: output channels.
    kernel: kernel length in steps.
    stride: conv stride in steps.
    pool: max-pool window in steps (1: no pooling).
  """

  features: int
  kernel: int = 3
  stride: int = 1
  pool: int = 1

  @nn.compact
  def __call__(self, x_BxLxC: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """[batch, steps, in] -> [batch, conv_steps // pool, features]."""
    pad = self.kernel // 2
    x = nn.Conv(
      self.features,
      (self.kernel,),
      strides=(self.stride,),
      padding=((pad, pad),),
      name="conv",
    )(x_BxLxC)
    x = nn.relu(batch_norm(train=train, name="bn")(x))
    if self.pool == 1:
      return x
    return disjoint_max_pool(x, (self.pool,))


class DenseHead(nn.Module):
  """Dense -> BatchNorm -> ReLU -> Dropout -> Dense to logits.

  The classifier of Musicnn, the short-chunk CNNs and the SE sample-level
  CNN in the reference (`dense1`, `bn`, `dense2`).

  Attributes:
    hidden: units of the first dense layer.
    num_classes: number of tags (output logits).
    dropout_rate: dropout before the output layer.
  """

  hidden: int
  num_classes: int
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x_BxD: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """float32 [batch, features] -> logits float32 [batch, num_classes]."""
    x = nn.Dense(self.hidden, name="dense_0")(x_BxD)
    x = nn.relu(batch_norm(train=train, name="bn")(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, name="dense_1")(x)


def input_batch_norm(log_mel_BxTxF: jnp.ndarray, *, train: bool) -> jnp.ndarray:
  """The reference's `spec_bn`: one BatchNorm channel over the dB log-mel.

  Must be called inside a compact method; the layer is named "spec_bn".

  Args:
    log_mel_BxTxF: float32 [batch, frames, mels] log-mel in dB.
    train: use and update batch statistics.

  Returns:
    float32 [batch, frames, mels, 1], normalised with statistics shared by
    every frame and mel band.
  """
  return batch_norm(train=train, name="spec_bn")(log_mel_BxTxF[..., None])
