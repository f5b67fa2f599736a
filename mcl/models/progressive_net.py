"""Progressive networks (Rusu et al. 2016, arXiv:1606.04671) over the
`ConvClassifier` backbone; without lateral connections, single-task
networks (STL) side by side.

Column c is a copy of the backbone (conv 3x3 blocks, global mean pool,
dense layers; without conv blocks the input is flattened) that feeds
head c. With `lateral=True`, every layer i >= 1 of column c (and head c)
also receives the previous layer's activations of columns 0..c-1 through
a lateral connection (Rusu et al., Eq. 1:
h_i^(c) = f(W_i^(c) h_{i-1}^(c) + sum_{j<c} U_i^(c:j) h_{i-1}^(j))); for conv
layers U is a 1x1 convolution over the concatenated columns (an adapter
without the paper's non-linear reduction). Parameters are flat: `conv_<i>/
col<c>`-style names are `conv_<i>_col<c>`, laterals `lateral_conv_<i>_col<c>`,
heads `head_<c>`.

Only the last column learns: the activations of columns 0..n-2 pass
through `stop_gradient`, so their parameters get exact zero gradients and
their backward pass is never computed. Head c reads column c alone (plus
its laterals), so old tasks' outputs never depend on newer columns.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mcl.models import layers
from mcl.models.conv_classifier import (
  ENCODER_PREFIX,
  dense_input,
  encoder_embedding,
  head_name,
  standardise,
)


def encoder_column(layer: str, column: int) -> str:
  """The group of a checkpoint layer in column `column`'s encoder trunk."""
  return f"{ENCODER_PREFIX}{layer}_col{column}"


def column_of(name: str) -> int | None:
  """The column a parameter group belongs to (heads: their task), or None."""
  if name.startswith("head_"):
    return int(name.split("_")[-1])
  if "_col" in name:
    return int(name.rsplit("_col", 1)[1])
  return None


class ProgressiveNet(nn.Module):
  """Columns of the backbone, one per task, with optional laterals.

  Attributes:
    conv_widths: output channels of each column's conv layers.
    dense_widths: units of each column's dense layers.
    head_sizes: classes of head c (one column and head per task).
    lateral: connect earlier columns to later ones (progressive nets); False
      gives independent single-task networks.
    encoder: each column starts with its own musicnn trunk
      (`encoder_<layer>_col<c>`; `ConvClassifier`'s `encoder`), no
      laterals between trunks.
  """

  conv_widths: Sequence[int]
  dense_widths: Sequence[int]
  head_sizes: Sequence[int]
  lateral: bool
  encoder: bool = False

  @property
  def heads(self) -> tuple[str, ...]:
    """Names of the task heads, in task order."""
    return tuple(head_name(t) for t in range(len(self.head_sizes)))

  @classmethod
  def from_params(cls, params: dict) -> "ProgressiveNet":
    """The module whose columns and widths match a parameter tree."""
    columns = sum(1 for name in params if name.startswith("head_"))

    def widths(prefix):
      n = sum(1 for k in params if k.startswith(prefix) and k.endswith("_col0"))
      return tuple(
        int(params[f"{prefix}{i}_col0"]["bias"].shape[0]) for i in range(n)
      )

    return cls(
      conv_widths=widths("conv_"),
      dense_widths=widths("dense_"),
      head_sizes=tuple(
        int(params[head_name(t)]["bias"].shape[0]) for t in range(columns)
      ),
      lateral=any(name.startswith("lateral_") for name in params),
      encoder=any(name.startswith(ENCODER_PREFIX) for name in params),
    )

  def _layer(self, make, name, hidden, c, first):
    """Layer `name` of column c: own input plus laterals from columns < c.

    The first layer reads the shared input and has no lateral.
    """
    out = make(f"{name}_col{c}", True)(hidden[c])
    if self.lateral and c > 0 and not first:
      previous = jnp.concatenate(hidden[:c], axis=-1)
      out = out + make(f"lateral_{name}_col{c}", False)(previous)
    return out

  @nn.compact
  def __call__(
    self, log_mel_BxTxF: jnp.ndarray, *, train: bool = False
  ) -> tuple[jnp.ndarray, ...]:
    """Logits of every head.

    Args:
      log_mel_BxTxF: float32 [batch, frames, mels] log-mel in dB (or
        [batch, rows, columns] images).
      train: unused (no dropout or BatchNorm: old tasks' outputs must not
        move through shared statistics); the zoo's signature.

    Returns:
      One float32 [batch, head_sizes[c]] array per column c.
    """
    columns = len(self.head_sizes)
    if self.encoder:
      hidden = [
        standardise(
          encoder_embedding(log_mel_BxTxF, lambda n, c=c: encoder_column(n, c))
        )[..., None]
        for c in range(columns)
      ]
    else:
      hidden = [standardise(log_mel_BxTxF)[..., None]] * columns

    def freeze(h):  # Only the newest column trains.
      return [jax.lax.stop_gradient(v) for v in h[:-1]] + h[-1:]

    for i, width in enumerate(self.conv_widths):

      def conv(name, own, width=width):
        shape = (3, 3) if own else (1, 1)
        return nn.Conv(width, shape, padding="SAME", use_bias=own, name=name)

      hidden = freeze(
        [
          layers.disjoint_max_pool(
            nn.relu(self._layer(conv, f"conv_{i}", hidden, c, i == 0)), (2, 2)
          )
          for c in range(columns)
        ]
      )
    pooled = bool(self.conv_widths)
    hidden = [dense_input(h, pooled) for h in hidden]
    for i, width in enumerate(self.dense_widths):

      def dense(name, own, width=width):
        return nn.Dense(width, use_bias=own, name=name)

      # Without conv layers dense_0 reads the shared input: no lateral.
      first = i == 0 and not pooled
      hidden = freeze(
        [
          nn.relu(self._layer(dense, f"dense_{i}", hidden, c, first))
          for c in range(columns)
        ]
      )
    outputs = []
    for c, n in enumerate(self.head_sizes):
      logits = nn.Dense(n, name=head_name(c))(hidden[c])
      if self.lateral and c > 0:
        previous = jnp.concatenate(hidden[:c], axis=-1)
        logits = logits + nn.Dense(
          n, use_bias=False, name=f"lateral_head_col{c}"
        )(previous)
      outputs.append(logits)
    return tuple(outputs)
