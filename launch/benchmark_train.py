"""Training throughput: mcl's step, a PyTorch eager twin, and `fit`'s share.

  .venv/bin/python launch/benchmark_train.py --model=gtzan --rounds=3
  .venv/bin/python launch/benchmark_train.py --model=short_chunk_cnn

Prints, per round and as medians:

- `step`: examples/s of `mcl.trainer.train.train_step` on random inputs of the
  model's shape (batch `--batch_size`), after a compile-and-warm-up phase;
  for "gtzan" the continual step (GTZAN backbone of `configs/gtzan.py`,
  three-class head, all-ones mask, Adam 1e-3), for a zoo model the tagging
  step (Adam 1e-4 with coupled weight decay 1e-4, dropout, BatchNorm);
- `torch`: the same network, loss and optimizer as a PyTorch eager twin
  (`launch/torch_twin.py`, in its own process; only when torch is
  installed, never a dependency), rounds alternating with the JAX ones,
  and the ratio JAX / torch;
- `fit` (gtzan only): steps/s inside `mcl.trainer.fit.fit` for a continual phase
  (`--fit_steps` steps, validation every 10 steps on 8 clips x 8 chunks,
  the GTZAN fold's size) over the bare step's steps/s.

Data loading is not timed (batches are in memory). Timings on a shared
machine are noisy: compare the ratios, over medians of several rounds.
"""

import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))

from mcl import models
from mcl.continual import method, phase  # noqa: E402
from mcl.models import inputs  # noqa: E402
from mcl.trainer import optimizer, train  # noqa: E402

_MODEL = flags.DEFINE_enum(
  "model", "gtzan", ["gtzan", *sorted(inputs.PAPER_INPUTS)], "Network."
)
_BATCH = flags.DEFINE_integer("batch_size", 16, "Examples per step.")
_STEPS = flags.DEFINE_integer("steps", 30, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds.")
_FIT_STEPS = flags.DEFINE_integer("fit_steps", 150, "Steps of the fit run.")

GTZAN_SHAPE = (188, 128)  # 3 s at 16 kHz, hop 256; 128 mels.
GTZAN_CONV, GTZAN_DENSE, GTZAN_CLASSES = (8, 16, 32, 32), (32,), 3


def _jax_setup(name: str, batch: int):
  """(state, batch, phase) of the model's step on random inputs."""
  rng = np.random.default_rng(0)
  if name == "gtzan":
    model = models.ConvClassifier(
      conv_widths=GTZAN_CONV,
      dense_widths=GTZAN_DENSE,
      head_sizes=(GTZAN_CLASSES,),
    )
    x = rng.normal(size=(batch, *GTZAN_SHAPE)).astype(np.float32)
    data = {
      "inputs": x,
      "label": rng.integers(0, GTZAN_CLASSES, batch).astype(np.int32),
      "task": np.zeros(batch, np.int32),
    }
    variables = model.init(jax.random.key(0), x[:1])
    phase = train.Phase(
      learning_rate=jnp.float32(1e-3),
      trainable=method.ones(variables["params"]),
      loss=train.TaskCrossEntropy((0,)),
    )
    tx = optimizer.direction("adam")
  else:
    spec = inputs.PAPER_INPUTS[name]
    model = models.get_model_class(name)()
    x = rng.normal(size=(batch, *spec.shape)).astype(np.float32)
    data = {
      "inputs": x,
      "tags": (rng.uniform(size=(batch, 50)) < 0.1).astype(np.float32),
    }
    key = jax.random.key(0)
    variables = model.init({"params": key, "dropout": key}, x[:1], train=False)
    phase = train.Phase(
      learning_rate=jnp.float32(1e-4), loss=train.TagBinaryCrossEntropy()
    )
    tx = optimizer.direction("adam", weight_decay=1e-4)
  state = train.TrainState.create(model, variables, tx)
  data = jax.device_put(data)
  return state, data, phase


def _time_jax(state, data, phase, steps):
  rng = jax.random.key(0)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = train.train_step(state, data, phase, rng)
  metrics["loss"].block_until_ready()
  return state, time.perf_counter() - start


def _torch_rate(name: str, batch: int, steps: int) -> float | None:
  """Examples/s of the PyTorch twin (`launch/torch_twin.py`), run in its
  own process (torch and TensorFlow in one process can crash); None when
  torch is not installed or the model has no twin."""
  script = os.path.join(os.path.dirname(__file__), "torch_twin.py")
  run = subprocess.run(
    [sys.executable, script, name, str(batch), str(steps)],
    capture_output=True,
    text=True,
  )
  if run.returncode:
    print(run.stderr.strip().splitlines()[-1])
    return None
  return float(run.stdout.split()[-1])


def _fit_rate(state, data, steps):
  """Steps/s of a continual phase inside `fit.fit` (compiled already)."""
  model = state.model
  rng = np.random.default_rng(1)
  clips = rng.normal(size=(4, 8, *GTZAN_SHAPE)).astype(np.float32)
  validation = {
    0: [
      {
        "inputs": clips,
        "label": np.array([0, 1, 2, 0], np.int32),
        "mask": np.ones(4, np.float32),
      }
    ]
    * 2
  }
  host = jax.device_get(data)

  def batches():
    while True:
      yield host

  config = phase.FitConfig(1e-3, steps, 10, patience=steps)
  params = jax.device_get(state.params)
  args = (model, params, method.ones(params), (0,))
  phase.fit_phase(*args, batches(), validation, config)  # Compile.
  start = time.perf_counter()
  result = phase.fit_phase(*args, batches(), validation, config)
  return result.steps / (time.perf_counter() - start)


def main(argv):
  del argv
  name, batch, steps = _MODEL.value, _BATCH.value, _STEPS.value
  state, data, phase = _jax_setup(name, batch)
  state, _ = _time_jax(state, data, phase, 3)  # Compile and warm up.
  jax_rates, torch_rates = [], []
  for r in range(_ROUNDS.value):
    state, seconds = _time_jax(state, data, phase, steps)
    jax_rates.append(steps * batch / seconds)
    line = f"round {r}: step {jax_rates[-1]:.1f} examples/s"
    torch_rate = _torch_rate(name, batch, steps)
    if torch_rate:
      torch_rates.append(torch_rate)
      line += f", torch {torch_rate:.1f} examples/s"
    print(line, flush=True)
  jax_rate = statistics.median(jax_rates)
  params = sum(np.size(p) for p in jax.tree.leaves(state.params))
  print(
    f"{name} ({params:,} params), batch {batch}, "
    f"{jax.devices()[0].platform} x{jax.device_count()}: "
    f"step {jax_rate:.1f} examples/s ({jax_rate / batch:.2f} steps/s)"
  )
  if torch_rates:
    torch_rate = statistics.median(torch_rates)
    print(
      f"torch eager twin {torch_rate:.1f} examples/s; "
      f"mcl / torch = {jax_rate / torch_rate:.2f}x"
    )
  if name == "gtzan":
    rate = _fit_rate(state, data, _FIT_STEPS.value)
    print(
      f"inside fit: {rate:.2f} steps/s = {rate / (jax_rate / batch):.0%} "
      "of the bare step"
    )


if __name__ == "__main__":
  app.run(main)
