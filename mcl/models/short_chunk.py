"""Short-chunk CNN and short-chunk ResNet of Won et al. 2020, "Evaluation
of CNN-based automatic music tagging models" (SMC 2020; reference
`training/model.py`, `ShortChunkCNN` and `ShortChunkCNN_Res`).

VGG-ish 3x3 networks with seven 2x downsampling stages over a 128-band
log-mel of 59,049 samples (231 frames): frequency goes to 1, the frames
left are max-pooled, and a dense head gives the logits. The ResNet
downsamples with stride-2 convs instead of max pools.
"""

import flax.linen as nn
import jax.numpy as jnp

from mcl.models import layers


def stage_widths(n_channels: int) -> tuple[int, ...]:
  """Output channels of the seven stages for base width `n_channels`."""
  c = n_channels
  return (c, c, 2 * c, 2 * c, 2 * c, 2 * c, 4 * c)


class ResBlock2d(nn.Module):
  """The reference's `Res_2d`: a two-conv residual block.

  conv 3x3 (stride s) -> BN -> ReLU -> conv 3x3 -> BN, plus a shortcut that
  is the identity, or conv 3x3 (stride s) -> BN when the stride or width
  changes (He et al. 2016 with a 3x3 rather than 1x1 projection), then
  ReLU. Padding 1, so each strided axis of size n becomes ceil(n / s).
  Also the CNN of the self-attention model (`mcl.models.cnnsa`), whose
  later blocks stride frequency only.

  Attributes:
    features: output channels.
    stride: (time, frequency) stride of the first conv and of the
      projection shortcut.
  """

  features: int
  stride: tuple[int, int] = (2, 2)

  @nn.compact
  def __call__(self, x_BxTxFxC: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """[batch, frames, mels, in] -> [batch, ceil(frames / s_t),
    ceil(mels / s_f), out]."""
    pad = ((1, 1), (1, 1))
    strides = tuple(self.stride)
    h = nn.Conv(self.features, (3, 3), strides, pad, name="conv_0")(x_BxTxFxC)
    h = nn.relu(layers.batch_norm(train=train, name="bn_0")(h))
    h = nn.Conv(self.features, (3, 3), padding=pad, name="conv_1")(h)
    h = layers.batch_norm(train=train, name="bn_1")(h)
    shortcut = x_BxTxFxC
    if strides != (1, 1) or x_BxTxFxC.shape[-1] != self.features:
      shortcut = nn.Conv(
        self.features, (3, 3), strides, pad, name="shortcut_conv"
      )(x_BxTxFxC)
      shortcut = layers.batch_norm(train=train, name="shortcut_bn")(shortcut)
    return nn.relu(h + shortcut)


class ShortChunkCNN(nn.Module):
  """Won et al. 2020 short-chunk CNN (seven conv blocks with 2x2 pools).

  Needs 128 to 255 mel bands (paper: 128) and at least 128 frames (paper:
  231).

  Attributes:
    n_channels: base width; stages have 1, 1, 2, 2, 2, 2, 4 times it.
    num_classes: number of tags.
    dropout_rate: dropout before the output layer.
  """

  n_channels: int = 128
  num_classes: int = 50
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Tag logits.

    Args:
      x: float32 [batch, frames, mels] log-mel in dB.
      train: batch statistics and dropout on.

    Returns:
      float32 [batch, num_classes] logits (no sigmoid).

    Raises:
      ValueError: the pooled map has more than one frequency bin.
    """
    h = layers.input_batch_norm(x, train=train)
    for i, width in enumerate(stage_widths(self.n_channels)):
      h = layers.ConvBlock2d(width, (2, 2), name=f"block_{i}")(h, train=train)
    h = layers.squeeze_pooled_axis(h, 2, "short_chunk_cnn").max(axis=1)
    return layers.DenseHead(
      4 * self.n_channels, self.num_classes, self.dropout_rate, name="head"
    )(h, train=train)


class ShortChunkResNet(nn.Module):
  """Won et al. 2020 short-chunk ResNet (seven stride-2 residual blocks).

  Needs at most 128 mel bands (paper: 128); any number of frames (paper:
  231, which leaves 2 frames to max-pool).

  Attributes:
    n_channels: base width; stages have 1, 1, 2, 2, 2, 2, 4 times it.
    num_classes: number of tags.
    dropout_rate: dropout before the output layer.
  """

  n_channels: int = 128
  num_classes: int = 50
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Tag logits.

    Args:
      x: float32 [batch, frames, mels] log-mel in dB.
      train: batch statistics and dropout on.

    Returns:
      float32 [batch, num_classes] logits (no sigmoid).

    Raises:
      ValueError: the downsampled map has more than one frequency bin.
    """
    h = layers.input_batch_norm(x, train=train)
    for i, width in enumerate(stage_widths(self.n_channels)):
      h = ResBlock2d(width, name=f"block_{i}")(h, train=train)
    h = layers.squeeze_pooled_axis(h, 2, "short_chunk_resnet").max(axis=1)
    return layers.DenseHead(
      4 * self.n_channels, self.num_classes, self.dropout_rate, name="head"
    )(h, train=train)
