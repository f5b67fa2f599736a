"""Training throughput of a zoo model at its paper input (steps/s).

  .venv/bin/python launch/benchmark_tagging.py --model=short_chunk_resnet

Times the jitted training step of `mcl.tagging.step` (Adam with weight
decay, the recipe's first stage) on random inputs of the model's paper
shape, after a compile-and-warm-up phase, and prints steps/s and examples/s
for the default JAX backend. Data loading is not included.
"""

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))

from mcl import models  # noqa: E402
from mcl.models import inputs  # noqa: E402
from mcl.tagging import recipe, step  # noqa: E402

_MODEL = flags.DEFINE_enum(
  "model", "short_chunk_resnet", sorted(inputs.PAPER_INPUTS), "Zoo model."
)
_BATCH = flags.DEFINE_integer("batch_size", 16, "Examples per step.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps (compile).")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps.")


def main(argv):
  del argv
  spec = inputs.PAPER_INPUTS[_MODEL.value]
  model = models.get_model_class(_MODEL.value)()
  rng = jax.random.key(0)
  x = jax.random.normal(rng, (_BATCH.value, *spec.shape), jnp.float32)
  tags = (jax.random.uniform(rng, (_BATCH.value, 50)) < 0.1).astype(jnp.float32)
  variables = model.init({"params": rng, "dropout": rng}, x[:1], train=False)
  stage = recipe.Stage("adam", 1e-4, 1)
  optimizer = recipe.stage_optimizer(
    stage,
    recipe.Recipe(
      stages=(stage,), weight_decay=1e-4, momentum=0.9, eval_every=1,
      max_evals=1,
    ),
  )  # fmt: skip
  state = step.TrainState(
    step=jnp.zeros([], jnp.int32),
    params=variables["params"],
    batch_stats=variables.get("batch_stats", {}),
    opt_state=optimizer.init(variables["params"]),
  )

  def run(n, state):
    for _ in range(n):
      state, loss = step.train_step(
        state, x, tags, rng, model=model, optimizer=optimizer
      )
    loss.block_until_ready()
    return state, float(loss)

  state, _ = run(_WARMUP.value, state)
  start = time.perf_counter()
  state, loss = run(_STEPS.value, state)
  seconds = time.perf_counter() - start
  params = sum(np.size(p) for p in jax.tree.leaves(variables["params"]))
  print(
    f"{_MODEL.value} ({params:,} params), input {spec.shape}, batch "
    f"{_BATCH.value}, {jax.devices()[0].platform}: "
    f"{_STEPS.value / seconds:.2f} steps/s, "
    f"{_STEPS.value * _BATCH.value / seconds:.1f} examples/s "
    f"(last loss {loss:.4f})"
  )


if __name__ == "__main__":
  app.run(main)
