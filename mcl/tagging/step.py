"""The jitted training step of multi-label auto-tagging.

The loss is the binary cross-entropy of the tags' sigmoids, mean over
examples and tags, l = -mean[y log s(z) + (1 - y) log(1 - s(z))], as in Won
et al., "Evaluation of CNN-based automatic music tagging models" (SMC 2020;
solver.py applies `nn.BCELoss` to sigmoid outputs). The optimizer is a
static argument, so each stage of a recipe compiles the step once.
"""

import functools

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

Variables = dict


@flax.struct.dataclass
class TrainState:
  """What the jitted step updates.

  Attributes:
    step: int32 scalar, optimizer steps over all stages.
    params: the model's "params" collection.
    batch_stats: its "batch_stats" collection ({} without BatchNorm).
    opt_state: the current stage's optimizer state.
  """

  step: jax.Array
  params: Variables
  batch_stats: Variables
  opt_state: optax.OptState


def variables_of(params: Variables, batch_stats: Variables) -> Variables:
  """The `model.apply` variables; no "batch_stats" entry when it is empty."""
  if batch_stats:
    return {"params": params, "batch_stats": batch_stats}
  return {"params": params}


def tagging_loss(logits: jax.Array, tags: jax.Array) -> jax.Array:
  """Sigmoid binary cross-entropy, mean over examples and tags.

  Args:
    logits: float32 [B, n_tags].
    tags: float32 [B, n_tags], multi-hot.

  Returns:
    float32 scalar.
  """
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, tags))


@functools.partial(
  jax.jit, static_argnames=("model", "optimizer"), donate_argnums=0
)
def train_step(
  state: TrainState,
  inputs: jax.Array,
  tags: jax.Array,
  rng: jax.Array,
  *,
  model: nn.Module,
  optimizer: optax.GradientTransformation,
) -> tuple[TrainState, jax.Array]:
  """One optimizer step on the mean sigmoid cross-entropy.

  Args:
    state: the state to update (donated).
    inputs: float32 [B, ...], the model's input.
    tags: float32 [B, n_tags], multi-hot.
    rng: run key; dropout uses `fold_in(rng, state.step)`.
    model: `apply(variables, x, train=True, mutable=["batch_stats"],
      rngs={"dropout": key})` -> logits [B, n_tags].
    optimizer: the stage's optimizer (static: one compile per stage).

  Returns:
    The new state and the batch's float32 loss.
  """
  dropout_rng = jax.random.fold_in(rng, state.step)

  def loss_fn(params):
    logits, updated = model.apply(
      variables_of(params, state.batch_stats),
      inputs,
      train=True,
      mutable=["batch_stats"],
      rngs={"dropout": dropout_rng},
    )
    return tagging_loss(logits, tags), updated.get("batch_stats", {})

  (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
    state.params
  )
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  new_state = state.replace(
    step=state.step + 1,
    params=optax.apply_updates(state.params, updates),
    batch_stats=batch_stats,
    opt_state=opt_state,
  )
  return new_state, loss
