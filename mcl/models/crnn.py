"""CRNN: Choi et al. 2017, "Convolutional recurrent neural networks for
music classification" (ICASSP 2017), as benchmarked by Won et al. 2020
(reference `training/model.py`, `CRNN`).

Four 3x3 conv blocks pool the 96 mel bands to one, leaving a sequence of
frame embeddings that a two-layer GRU summarises; its last output goes
through dropout and a dense layer.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from mcl.models import layers

# (time, frequency) max-pool windows; square, as in the reference.
POOLS = ((2, 2), (3, 3), (4, 4), (4, 4))


class CRNN(nn.Module):
  """Choi et al. 2017 CRNN.

  Needs 96 to 191 mel bands (paper: 96) so that the pools reduce frequency
  to 1, and at least 96 frames (paper: 1,819, i.e. 18 GRU steps).

  Attributes:
    conv_widths: output channels of `block_0` ... `block_3`.
    gru_width: hidden units of each GRU layer.
    gru_layers: stacked GRU layers `gru_0`, `gru_1`, ...
    num_classes: number of tags.
    dropout_rate: dropout before the output layer.
  """

  conv_widths: Sequence[int] = (64, 128, 128, 128)
  gru_width: int = 32
  gru_layers: int = 2
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
    if len(self.conv_widths) != len(POOLS):
      raise ValueError(f"CRNN has {len(POOLS)} blocks: {self.conv_widths}")
    h = layers.input_batch_norm(x, train=train)
    for i, (width, pool) in enumerate(
      zip(self.conv_widths, POOLS, strict=True)
    ):
      h = layers.ConvBlock2d(width, pool, name=f"block_{i}")(h, train=train)
    h_BxSxC = layers.squeeze_pooled_axis(h, 2, "crnn")
    for i in range(self.gru_layers):
      # Named cell: its parameters live at `gru_<i>/{ir,iz,in,hr,hz,hn}`.
      cell = nn.GRUCell(self.gru_width, name=f"gru_{i}")
      h_BxSxC = nn.RNN(cell)(h_BxSxC)
    h = h_BxSxC[:, -1]
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return nn.Dense(self.num_classes, name="dense")(h)
