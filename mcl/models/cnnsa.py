"""Self-attention CNN ("CNNSA") of Won, Chun & Serra, "Toward interpretable
music tagging with self-attention" (2019; reference `training/model.py`,
`CNNSA`, and `training/attention_modules.py`).

A residual CNN over the 128-band log-mel (three blocks striding time and
frequency by 2, four striding frequency only) turns 15 s (938 frames) into
a sequence of 118 vectors of 2 * n_channels; a fixed [CLS] vector is
prepended and a BERT-style encoder (2 layers, width 256, 8 heads, feed-
forward 1024, exact GELU, post-LayerNorm with epsilon 1e-12, dropout 0.4,
attention dropout 0.5, no position embedding: the reference builds none)
reads it. Its [CLS] output goes through BERT's pooler (dense + tanh),
dropout 0.5 and the output layer.
"""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mcl.models import layers
from mcl.models.short_chunk import ResBlock2d


def cls_vector(width: int) -> np.ndarray:
  """The reference's [CLS] token: float32 [width], uniform in [0, 1) from
  NumPy's legacy generator seeded 0 (`np.random.seed(0); random((1, w))`).
  A constant, not a parameter."""
  return np.random.RandomState(0).random_sample((width,)).astype(np.float32)


class EncoderLayer(nn.Module):
  """One BERT layer (`BertLayer`): self-attention and feed-forward, each
  followed by dropout, a residual connection and LayerNorm.

  Attributes:
    num_heads: attention heads.
    intermediate: feed-forward width.
    dropout_rate: on both sub-layers' outputs.
    attention_dropout_rate: on the attention probabilities.
  """

  num_heads: int = 8
  intermediate: int = 1024
  dropout_rate: float = 0.4
  attention_dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x_BxLxD: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """float32 [batch, length, width] -> the same shape."""
    width = x_BxLxD.shape[-1]
    h = nn.MultiHeadDotProductAttention(
      num_heads=self.num_heads,
      dropout_rate=self.attention_dropout_rate,
      broadcast_dropout=False,
      deterministic=not train,
      name="attention",
    )(x_BxLxD)
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    x = nn.LayerNorm(epsilon=1e-12, name="attention_norm")(x_BxLxD + h)
    h = nn.gelu(nn.Dense(self.intermediate, name="intermediate")(x), False)
    h = nn.Dense(width, name="output")(h)
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return nn.LayerNorm(epsilon=1e-12, name="output_norm")(x + h)


class CNNSA(nn.Module):
  """Won et al. 2019 CNN + self-attention tagger (reference defaults).

  Needs 128 mel bands (they stride to 1) and any number of frames (paper:
  938, 15 s).

  Attributes:
    n_channels: CNN base width (the sequence has 2 * n_channels = 256).
    num_classes: number of tags.
    num_layers: encoder layers.
    num_heads: attention heads.
    intermediate: feed-forward width.
    dropout_rate: dropout before the output layer.
  """

  n_channels: int = 128
  num_classes: int = 50
  num_layers: int = 2
  num_heads: int = 8
  intermediate: int = 1024
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
      ValueError: the CNN leaves more than one frequency bin.
    """
    c = self.n_channels
    strides = [(2, 2)] * 3 + [(1, 2)] * 4  # (time, frequency)
    widths = [c, c] + [2 * c] * 5
    h = layers.input_batch_norm(x, train=train)
    for i, (width, stride) in enumerate(zip(widths, strides, strict=True)):
      h = ResBlock2d(width, stride, name=f"block_{i}")(h, train=train)
    h = layers.squeeze_pooled_axis(h, 2, "cnnsa")  # [batch, steps, 2c]
    cls = jnp.broadcast_to(cls_vector(2 * c), (h.shape[0], 1, 2 * c))
    h = jnp.concatenate([cls, h], axis=1)
    for i in range(self.num_layers):
      h = EncoderLayer(self.num_heads, self.intermediate, name=f"encoder_{i}")(
        h, train=train
      )
    h = jnp.tanh(nn.Dense(2 * c, name="pooler")(h[:, 0]))
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return nn.Dense(self.num_classes, name="output")(h)
