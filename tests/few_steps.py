"""A few jitted training steps of a model on one fixed batch (the zoo's
"trains on real audio" tests): init and scanned Adam steps in one compiled
program, since compilation dominates on CPU."""

import jax
import optax


def train(
  model,
  x,
  loss_of_logits,
  steps: int,
  learning_rate: float = 3e-3,
  optimise: bool = False,
):
  """Trains `model` `steps` Adam steps on `x`.

  Args:
    model: `apply(variables, x, train, rngs, mutable)` with BatchNorm.
    x: the input batch.
    loss_of_logits: logits -> scalar loss (the targets are closed over).
    steps: optimizer steps.
    learning_rate: Adam's.
    optimise: compile with XLA's default backend optimisation (level 2)
      instead of the suite's level 0 (tests/conftest.py), for a model
      whose steps, not its compilation, take the time.

  Returns:
    (initial variables, final params, final batch_stats, losses [steps],
    final loss), the final loss with the first step's dropout mask, so that
    only the parameters differ from the first loss.
  """
  optimiser = optax.adam(learning_rate)

  def loss_fn(params, batch_stats, rng):
    logits, updates = model.apply(
      {"params": params, "batch_stats": batch_stats},
      x,
      train=True,
      rngs={"dropout": rng},
      mutable=["batch_stats"],
    )
    return loss_of_logits(logits), updates["batch_stats"]

  def step(carry, rng):
    params, batch_stats, opt_state = carry
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      params, batch_stats, rng
    )
    updates, opt_state = optimiser.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, batch_stats, opt_state), loss

  def run(init_rng, dropout_rng):
    variables = model.init(init_rng, x, train=False)
    params = variables["params"]
    carry = (params, variables["batch_stats"], optimiser.init(params))
    rngs = jax.random.split(dropout_rng, steps)
    (params, batch_stats, _), losses = jax.lax.scan(step, carry, rngs)
    final_loss, _ = loss_fn(params, batch_stats, rngs[0])
    return variables, params, batch_stats, losses, final_loss

  keys = jax.random.key(0), jax.random.key(1)
  options = {"xla_backend_optimization_level": 2} if optimise else None
  return jax.jit(run).lower(*keys).compile(compiler_options=options)(*keys)
