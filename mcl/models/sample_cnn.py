"""Sample-level CNNs on the raw waveform, as benchmarked by Won et al. 2020
(reference `training/model.py`, `SampleCNN` and `SampleCNNSE`).

`SampleCNN`: Lee et al. 2017, "Sample-level deep convolutional neural
networks for music auto-tagging using raw waveforms" (SMC 2017), the 3^9
model: a stride-3 conv, nine conv blocks with 3x max pools, a 1x1 conv
block, dropout and a dense layer, over 59,049 samples.

`SampleCNNSE`: Kim et al. 2018, "Sample-level CNN architectures for music
auto-tagging using raw waveforms" (ICASSP 2018): the same skeleton built
from residual blocks with squeeze-and-excitation (Hu et al. 2018), and a
dense -> BatchNorm -> ReLU hidden layer before the output.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from mcl.models import layers

WIDTHS = (128, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512)


def block_geometry(num_blocks: int) -> list[tuple[int, int, int]]:
  """(kernel, stride, pool) of each block, in steps.

  Block 0 is the strided "frame" conv (kernel 3, stride 3, no pool), the
  last block a 1x1 conv without pooling, and the rest kernel-3 convs with
  3x max pools, so 3^(num_blocks - 1) samples pool to one step.
  """
  middle = [(3, 1, 3)] * (num_blocks - 2)
  return [(3, 3, 1), *middle, (1, 1, 1)]


class SampleCNN(nn.Module):
  """Lee et al. 2017 sample-level CNN (3^9 model).

  With n = len(widths) blocks, needs 3^(n-1) - 2 to 2 * 3^(n-1) - 3
  samples (paper: 59,049 = 3^10 with 11 blocks) so that the last block has
  one step.

  Attributes:
    widths: output channels of `block_0` ... `block_<n-1>`.
    num_classes: number of tags.
    dropout_rate: dropout before the output layer.
  """

  widths: Sequence[int] = WIDTHS
  num_classes: int = 50
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Tag logits.

    Args:
      x: float32 [batch, samples] waveform in [-1, 1] at 16 kHz.
      train: batch statistics and dropout on.

    Returns:
      float32 [batch, num_classes] logits (no sigmoid).

    Raises:
      ValueError: the last block has more than one step (wrong length).
    """
    h = x[..., None]
    geometry = block_geometry(len(self.widths))
    for i, (width, (kernel, stride, pool)) in enumerate(
      zip(self.widths, geometry, strict=True)
    ):
      block = layers.ConvBlock1d(width, kernel, stride, pool, name=f"block_{i}")
      h = block(h, train=train)
    h = layers.squeeze_pooled_axis(h, 1, "sample_cnn")
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return nn.Dense(self.num_classes, name="dense")(h)


class ResSEBlock1d(nn.Module):
  """The reference's `ResSE_1d`: residual block with squeeze-and-excitation.

  conv (stride s) -> BN -> ReLU -> conv -> BN, rescaled per channel by
  sigmoid(dense(ReLU(dense(mean over time)))), the excitation having no
  bottleneck (both dense layers keep the width); plus a shortcut that is
  the identity, or conv (stride s) -> BN when the stride or width changes;
  then ReLU and a disjoint max pool.

  Attributes:
    features: output channels.
    kernel: conv kernel length in steps (padding kernel // 2).
    stride: stride of the first conv and of the projection shortcut.
    pool: max-pool window in steps (1: no pooling).
  """

  features: int
  kernel: int = 3
  stride: int = 1
  pool: int = 3

  @nn.compact
  def __call__(self, x_BxLxC: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """[batch, steps, in] -> [batch, conv_steps // pool, features]."""
    pad = ((self.kernel // 2, self.kernel // 2),)

    def conv(name, stride):
      return nn.Conv(self.features, (self.kernel,), (stride,), pad, name=name)

    h = conv("conv_0", self.stride)(x_BxLxC)
    h = nn.relu(layers.batch_norm(train=train, name="bn_0")(h))
    h = layers.batch_norm(train=train, name="bn_1")(conv("conv_1", 1)(h))

    excitation = nn.relu(nn.Dense(self.features, name="se_0")(h.mean(axis=1)))
    excitation = nn.sigmoid(nn.Dense(self.features, name="se_1")(excitation))
    h = h * excitation[:, None, :]

    shortcut = x_BxLxC
    if self.stride != 1 or x_BxLxC.shape[-1] != self.features:
      shortcut = conv("shortcut_conv", self.stride)(x_BxLxC)
      shortcut = layers.batch_norm(train=train, name="shortcut_bn")(shortcut)
    h = nn.relu(h + shortcut)
    if self.pool == 1:
      return h
    return layers.disjoint_max_pool(h, (self.pool,))


class SampleCNNSE(nn.Module):
  """Kim et al. 2018 sample-level CNN with residual SE blocks.

  Same input lengths as `SampleCNN` (paper: 59,049 samples).

  Attributes:
    widths: output channels of `block_0` ... `block_<n-1>`.
    dense_width: hidden units of the head (reference: 512).
    num_classes: number of tags.
    dropout_rate: dropout before the output layer.
  """

  widths: Sequence[int] = WIDTHS
  dense_width: int = 512
  num_classes: int = 50
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Tag logits.

    Args:
      x: float32 [batch, samples] waveform in [-1, 1] at 16 kHz.
      train: batch statistics and dropout on.

    Returns:
      float32 [batch, num_classes] logits (no sigmoid).

    Raises:
      ValueError: the last block has more than one step (wrong length).
    """
    h = x[..., None]
    geometry = block_geometry(len(self.widths))
    for i, (width, (kernel, stride, pool)) in enumerate(
      zip(self.widths, geometry, strict=True)
    ):
      block = ResSEBlock1d(width, kernel, stride, pool, name=f"block_{i}")
      h = block(h, train=train)
    h = layers.squeeze_pooled_axis(h, 1, "sample_cnn_se")
    return layers.DenseHead(
      self.dense_width, self.num_classes, self.dropout_rate, name="head"
    )(h, train=train)
