"""FCN: the fully convolutional tagger of Choi et al. 2016, "Automatic
tagging using deep convolutional neural networks" (ISMIR 2016), as
benchmarked by Won et al. 2020 (reference `training/model.py`, `FCN`).

Five 3x3 conv blocks whose max pools shrink a 96-band, 29.1 s log-mel to a
1x1 map, then dropout and one dense layer.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from mcl.models import layers

# (time, frequency) max-pool windows; the reference writes them
# (frequency, time): (2, 4), (2, 4), (2, 4), (3, 5), (4, 4).
POOLS = ((4, 2), (4, 2), (4, 2), (5, 3), (4, 4))


class FCN(nn.Module):
  """Choi et al. 2016 FCN-5.

  Needs 96 to 191 mel bands (paper: 96) and 1,280 to 2,559 frames (paper:
  1,819) so that the pools reduce the map to 1x1.

  Attributes:
    widths: output channels of `block_0` ... `block_4`.
    num_classes: number of tags.
    dropout_rate: dropout before the output layer.
  """

  widths: Sequence[int] = (64, 128, 128, 128, 64)
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
      ValueError: the pooled map is not 1x1 (wrong input size).
    """
    if len(self.widths) != len(POOLS):
      raise ValueError(f"FCN has {len(POOLS)} blocks, got {self.widths}")
    h = layers.input_batch_norm(x, train=train)
    for i, (width, pool) in enumerate(zip(self.widths, POOLS, strict=True)):
      h = layers.ConvBlock2d(width, pool, name=f"block_{i}")(h, train=train)
    h = layers.squeeze_pooled_axis(h, 1, "fcn")
    h = layers.squeeze_pooled_axis(h, 1, "fcn")
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return nn.Dense(self.num_classes, name="dense")(h)
