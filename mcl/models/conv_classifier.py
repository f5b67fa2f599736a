"""The seed paper's classifier: 2D conv blocks over the log-mel, global
pooling, dense layers, one output head per task.

Every layer that DEN grows has a stable name (`conv_<i>`, `dense_<i>`) and
its width as a field, so a grown network is this class re-instantiated with
larger widths plus a surgically built parameter tree. Global pooling makes
each channel of the last conv layer one input row of `dense_0`, so growing
a channel is a row/column operation. There is no BatchNorm: shared batch
statistics would drift across tasks and change old tasks' outputs; the input
is instead standardised per example, which has no parameters.

With no conv layer (`conv_widths=()`) the network is a multilayer
perceptron: the [frames, bins] input (e.g. a [rows, columns] image of the
permuted-digits benchmark) is flattened into `dense_0`'s input rows, and
the hidden layers are `dense_0`, `dense_1`, ... The per-example
standardisation is kept: it is invariant to a permutation of the input
values, so permuted tasks differ only in pixel order, and it puts images
and log-mels on one scale without a parameter.

With `encoder=True` the network's input is a musicnn log-mel patch and
its first layers are the musicnn package's trunk up to the penultimate
(`pons_musicnn.musicnn_trunk`, groups `encoder_<layer>`, its BatchNorms
as trained `Affine`s), loaded from a checkpoint by the method that builds
it and trained end to end: the 200-d penultimate is the MLP's input, as
the stored embeddings of a frozen encoder are (`model.fine_tune_encoder`).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from mcl.models import layers, pons_musicnn

# The pretrained trunk's parameter groups are `encoder_<checkpoint layer>`.
ENCODER_PREFIX = "encoder_"


def encoder_name(layer: str) -> str:
  """The group of a checkpoint layer in an encoder trunk."""
  return ENCODER_PREFIX + layer


def encoder_embedding(x_BxTxF: jnp.ndarray, rename) -> jnp.ndarray:
  """musicnn's penultimate as a [B, 1, 200] "image" (call from a compact
  method; `rename` names its groups)."""
  h = pons_musicnn.musicnn_trunk(
    x_BxTxF,
    norm=lambda name: pons_musicnn.Affine(name=name),
    dropout=lambda x: x,
    sow=lambda name, value: None,
    rename=rename,
  )
  return h[:, None, :]


def standardise(x_BxTxF: jnp.ndarray) -> jnp.ndarray:
  """Zero mean, unit variance per example over time and frequency."""
  mean = x_BxTxF.mean(axis=(1, 2), keepdims=True)
  std = x_BxTxF.std(axis=(1, 2), keepdims=True)
  return (x_BxTxF - mean) / (std + 1e-5)


def dense_input(x_BxTxFxC: jnp.ndarray, pooled: bool) -> jnp.ndarray:
  """The dense layers' input: [B, T, F, C] -> [B, C] by a global mean pool
  (after conv layers) or [B, T * F * C] by flattening (pooled=False)."""
  if pooled:
    return x_BxTxFxC.mean(axis=(1, 2))
  return x_BxTxFxC.reshape(x_BxTxFxC.shape[0], -1)


def head_name(task: int) -> str:
  """Name of task `task`'s output head."""
  return f"head_{task}"


class ConvClassifier(nn.Module):
  """Conv blocks (3x3, ReLU, 2x2 max-pool), global mean pool, dense, heads.

  Without conv blocks the input is flattened instead of pooled.

  Attributes:
    conv_widths: output channels of `conv_0`, `conv_1`, ...
    dense_widths: units of `dense_0`, `dense_1`, ...
    head_sizes: classes of `head_0`, `head_1`, ... (one head per task).
    encoder: a musicnn trunk before the layers (module docstring).
  """

  conv_widths: Sequence[int]
  dense_widths: Sequence[int]
  head_sizes: Sequence[int]
  encoder: bool = False

  @property
  def hidden_layers(self) -> tuple[str, ...]:
    """Names of the growable layers, input to output."""
    return tuple(f"conv_{i}" for i in range(len(self.conv_widths))) + tuple(
      f"dense_{i}" for i in range(len(self.dense_widths))
    )

  @property
  def heads(self) -> tuple[str, ...]:
    """Names of the task heads, in task order."""
    return tuple(head_name(t) for t in range(len(self.head_sizes)))

  @classmethod
  def from_params(cls, params: dict) -> "ConvClassifier":
    """The module whose widths match a (possibly grown) parameter tree."""

    def count(prefix):
      return sum(1 for name in params if name.startswith(prefix))

    return cls(
      conv_widths=tuple(
        int(params[f"conv_{i}"]["bias"].shape[0]) for i in range(count("conv_"))
      ),
      dense_widths=tuple(
        int(params[f"dense_{i}"]["bias"].shape[0])
        for i in range(count("dense_"))
      ),
      head_sizes=tuple(
        int(params[head_name(t)]["bias"].shape[0])
        for t in range(count("head_"))
      ),
      encoder=count(ENCODER_PREFIX) > 0,
    )

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
      One float32 [batch, head_sizes[t]] logit array per task head.
    """
    # Every hidden layer's input is sown into "intermediates" (a no-op
    # unless that collection is mutable): Gradient Projection Memory
    # (`mcl.continual.gpm`) reads the layers' input representations.
    if self.encoder:
      log_mel_BxTxF = encoder_embedding(log_mel_BxTxF, encoder_name)
    x = standardise(log_mel_BxTxF)[..., None]
    for i, width in enumerate(self.conv_widths):
      self.sow("intermediates", f"conv_{i}_input", x)
      x = nn.Conv(width, (3, 3), padding="SAME", name=f"conv_{i}")(x)
      x = layers.disjoint_max_pool(nn.relu(x), (2, 2))
    x = dense_input(x, pooled=bool(self.conv_widths))
    for i, width in enumerate(self.dense_widths):
      self.sow("intermediates", f"dense_{i}_input", x)
      x = nn.relu(nn.Dense(width, name=f"dense_{i}")(x))
    # The heads' input: iCaRL's feature map (`mcl.continual.class_incremental`).
    self.sow("intermediates", "features", x)
    return tuple(
      nn.Dense(n, name=head_name(t))(x) for t, n in enumerate(self.head_sizes)
    )
