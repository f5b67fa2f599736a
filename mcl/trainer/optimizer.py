"""Update directions of the one step, and Adam's metric for proximal steps.

`mcl.trainer.train.train_step` scales the direction of `direction(...)` by
-learning_rate, the rate being an array argument; `direction` is cached,
so every phase or stage of one kind passes the same (static) object and
reuses the compiled step. A continual phase trains with Adam (fresh state
per phase); Won et al.'s tagging recipe with Adam, then Nesterov SGD, both
with torch's coupled weight decay (`mcl.trainer.recipe.won_2020`). A
proximal step after Adam's update (DEN's L1 and group lasso,
`mcl.continual.sparsity`) takes its thresholds in Adam's own per-coordinate
step sizes, read from the optimizer state by `adam_metric`.
"""

import functools
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


DIRECTIONS = ("adam", "sgd")


@functools.cache
def direction(
  name: str = "adam", weight_decay: float = 0.0, momentum: float = 0.9
) -> optax.GradientTransformation:
  """The update direction d of a step p <- p - lr * d (one object per args).

  Args:
    name: "adam": m_hat / (sqrt(v_hat) + eps), b1 0.9, b2 `ADAM_B2`, eps
      `ADAM_EPS` (torch's defaults); "sgd": Nesterov momentum
      (g + momentum * buffer, torch's `nesterov=True`).
    weight_decay: torch's coupled L2: g <- g + weight_decay * p before the
      moments or the momentum buffer (`optax.add_decayed_weights` first in
      the chain; unlike AdamW's decoupled decay). 0 adds nothing.
    momentum: SGD's momentum (Adam keeps b1 = 0.9).

  Raises:
    ValueError: an unknown name.
  """
  if name == "adam":
    base = optax.scale_by_adam(b2=ADAM_B2, eps=ADAM_EPS)
  elif name == "sgd":
    base = optax.trace(decay=momentum, nesterov=True)
  else:
    raise ValueError(f"unknown optimizer {name!r}; known: {DIRECTIONS}")
  if not weight_decay:
    return base
  return optax.chain(optax.add_decayed_weights(weight_decay), base)


def adam_metric(opt_state, learning_rate: jax.Array) -> AdamMetric:
  """Adam's metric from the state of `direction("adam")` after an update."""
  count = optax.tree_utils.tree_get(opt_state, "count")
  nu = optax.tree_utils.tree_get(opt_state, "nu")
  correction = 1.0 - jnp.power(ADAM_B2, count.astype(jnp.float32))
  return AdamMetric(
    jnp.asarray(learning_rate, jnp.float32),
    jax.tree.map(lambda v: v / correction, nu),
  )
