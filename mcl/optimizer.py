"""The optimizer of every training phase, and its metric for proximal steps.

Every phase trains with Adam (fresh state per phase, `mcl.train.fit`). A
proximal step after Adam's update (DEN's L1 and group lasso,
`mcl.continual.sparsity`) takes its thresholds in Adam's own per-coordinate
step sizes, read from the optimizer state by `adam_metric`.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

Params = dict
# Adam's decay of the second moment and its denominator's epsilon.
ADAM_B2 = 0.999
ADAM_EPS = 1e-8


class AdamMetric(NamedTuple):
  """Adam's diagonal metric after an update: what one step may move.

  Coordinate i moved by learning_rate * m_i / (sqrt(v_i) + eps), with m, v
  the bias-corrected moments; a proximal map in this metric (Yun et al.,
  "Adaptive proximal gradient methods for structured neural networks",
  NeurIPS 2021) soft-thresholds coordinate i by lambda * `step_size(v_i)`,
  so that lambda is in gradient units: a weight leaves zero when its
  gradient's running mean exceeds lambda, whatever the gradient's scale.

  Attributes:
    learning_rate: float32 scalar.
    second_moment: bias-corrected v, a float32 tree like the parameters.
  """

  learning_rate: jax.Array
  second_moment: Params

  def step_size(self, v: jax.Array) -> jax.Array:
    """learning_rate / (sqrt(v) + eps), elementwise over `v`."""
    return self.learning_rate / (jnp.sqrt(v) + ADAM_EPS)


def adam(learning_rate: float) -> optax.GradientTransformation:
  """The optimizer of every phase: Adam with `ADAM_B2` and `ADAM_EPS`."""
  return optax.adam(learning_rate, b2=ADAM_B2, eps=ADAM_EPS)


def adam_metric(opt_state, learning_rate: jax.Array) -> AdamMetric:
  """Adam's metric from the state of `adam` after an update."""
  count = optax.tree_utils.tree_get(opt_state, "count")
  nu = optax.tree_utils.tree_get(opt_state, "nu")
  correction = 1.0 - jnp.power(ADAM_B2, count.astype(jnp.float32))
  return AdamMetric(
    jnp.asarray(learning_rate, jnp.float32),
    jax.tree.map(lambda v: v / correction, nu),
  )
