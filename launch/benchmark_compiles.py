"""XLA compilations of a continual run, and its steps/s beside the bare step's.

  .venv/bin/python launch/benchmark_compiles.py --config=configs/gtzan.py \
    --config.train.fit.max_steps=20 --workdir=/tmp/bench_den

Runs `mcl.experiments.continual.runner.run` into a fresh `--workdir` and prints:

- compilations: XLA backend compilations (jax's
  "/jax/core/compile/backend_compile_duration" events) in all, of
  `train_step` alone, and their seconds; the ten functions compiled most;
- run: wall seconds, optimizer steps of all phases and their steps/s;
- bare: steps/s of `mcl.trainer.train.train_step` alone on the run's batch shape
  and the initial backbone (all-ones mask, no term; after a warm-up), and
  the run's steps/s over it (the share of a run's time its steps get).

The bare step is measured after the run, in the same process.
"""

import os
import shutil
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))

from mcl.datasets import from_config
from mcl.experiments.continual import runner  # noqa: E402
from mcl.models import ConvClassifier  # noqa: E402
from mcl.runtime import compilations  # noqa: E402
from mcl.trainer import optimizer, train  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/gtzan.py")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/benchmark_compiles", "Wiped.")
_BARE_STEPS = flags.DEFINE_integer("bare_steps", 100, "Timed bare steps.")

_COMPILATIONS = compilations.Compilations()
_COMPILES, _SECONDS = _COMPILATIONS.counts, _COMPILATIONS.seconds


def _bare_steps_per_second(config, input_shape) -> float:
  """train_step's steps/s on the run's batch shape, initial widths."""
  widths = config.model.widths
  model = ConvClassifier(
    conv_widths=tuple(widths.conv_widths),
    dense_widths=tuple(widths.dense_widths),
    head_sizes=(len(config.tasks[0]),),
  )
  batch_shape = (config.train.batch_size, *input_shape[1:])
  variables = model.init(jax.random.key(0), jnp.zeros(batch_shape))
  state = train.TrainState.create(model, variables, optimizer.direction("adam"))
  rng = np.random.default_rng(0)
  batch = {
    "inputs": jnp.asarray(rng.standard_normal(batch_shape), jnp.float32),
    "label": jnp.zeros(batch_shape[0], jnp.int32),
    "task": jnp.zeros(batch_shape[0], jnp.int32),
  }
  phase = train.Phase(
    learning_rate=jnp.float32(1e-3),
    loss=train.TaskCrossEntropy((0,)),
  )
  key = jax.random.key(0)
  for _ in range(5):
    state, out = train.train_step(state, batch, phase, key)
  jax.block_until_ready(out)
  start = time.perf_counter()
  for _ in range(_BARE_STEPS.value):
    state, out = train.train_step(state, batch, phase, key)
  jax.block_until_ready(out)
  return _BARE_STEPS.value / (time.perf_counter() - start)


def main(argv):
  del argv
  config = _CONFIG.value
  shutil.rmtree(_WORKDIR.value, ignore_errors=True)
  _COMPILATIONS.start()
  start = time.perf_counter()
  out = runner.run(config, _WORKDIR.value)
  wall = time.perf_counter() - start
  run_compiles, run_seconds = sum(_COMPILES.values()), sum(_SECONDS.values())
  step_compiles = _COMPILES["jit(train_step)"]
  steps = sum(
    phase["steps"]
    for record in out["task_records"]
    for phase in record["phases"].values()
  )
  input_shape = from_config.build(config).input_shape
  bare = _bare_steps_per_second(config, input_shape)
  print(
    f"compilations: {run_compiles} in all, {run_seconds:.1f} s; "
    f"train_step {step_compiles}, {_SECONDS['jit(train_step)']:.1f} s"
  )
  for name, n in _COMPILES.most_common(10):
    print(f"  {name}: {n} ({_SECONDS[name]:.1f} s)")
  print(f"run: {wall:.1f} s wall, {steps} steps, {steps / wall:.2f} steps/s")
  print(
    f"bare train_step: {bare:.1f} steps/s; run / bare = "
    f"{steps / wall / bare:.3f}"
  )
  print("accuracy matrix:", np.round(out["accuracy_matrix"][-1], 4).tolist())
  print("params per task:", out["params_per_task"])


if __name__ == "__main__":
  app.run(main)
