"""A fully connected network on track-level features: the MLP baseline of
Defferrard et al., "FMA: a dataset for music analysis" (ISMIR 2017), on
its 518 features (`mcl.features.track_features`): sigmoid hidden layers, a
softmax output over the genres (the softmax is in the loss).

The paper gives no widths; two hidden layers of 256 with dropout are our
choice. Inputs are standardised by the caller (statistics of the
training split).
"""

import flax.linen as nn
import jax.numpy as jnp


class FeatureDNN(nn.Module):
  """Dense -> sigmoid (-> dropout) per hidden layer, then dense to logits.

  Attributes:
    hidden: units of the hidden layers.
    num_classes: number of genres.
    dropout_rate: dropout after each hidden layer.
  """

  hidden: tuple[int, ...] = (256, 256)
  num_classes: int = 16
  dropout_rate: float = 0.2

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """float32 [batch, features] (standardised) -> logits [batch, classes]."""
    h = x
    for i, width in enumerate(self.hidden):
      h = nn.sigmoid(nn.Dense(width, name=f"dense_{i}")(h))
      h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return nn.Dense(self.num_classes, name="output")(h)
