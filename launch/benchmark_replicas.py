"""Replica groups against the same runs one after another, in one process.

  .venv/bin/python launch/benchmark_replicas.py --config=configs/gtzan.py \
    --methods=stl,finetune,den --replicas=1,5,15 [--strategy=unroll] \
    [--rounds=2]

For every method and R: the first R runs of folds 0-4 x seeds 0, 1, 2
(fold-major: R=5 is the five folds of seed 0) at the config's budget
(`configs/gtzan.py`: the default, 150-step phases), run

- sequential: `mcl.experiments.run` of each, one after another;
- group: `mcl.experiments.run_replicas` of all R (`mcl.trainer.replicas`).

It prints per (method, R, mode): wall seconds, training examples (every
phase's optimizer steps x batch size, from the results.json task
records), examples/s, XLA compilations of `train_step` and
`replica_step` and their seconds (jax's backend-compile events, as
`JAX_LOG_COMPILES=1` lists them), and the group's examples/s over the
sequential runs', and the largest difference between a run's two
results.json (`results.largest_difference`). A warm-up run (2-step
phases) first pays the imports, the records and the lone step's
compilation, so the sequential runs start warm and the group pays its
own step's compilation.
"""

import json
import os
import shutil
import sys
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))

from mcl import experiments  # noqa: E402
from mcl.experiments.continual import results  # noqa: E402
from mcl.runtime import compilations  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/gtzan.py")
_METHODS = flags.DEFINE_list("methods", ["stl", "finetune", "den"], "Methods.")
_REPLICAS = flags.DEFINE_list("replicas", ["1", "5", "15"], "Group sizes R.")
_MODES = flags.DEFINE_list("modes", ["sequential", "group"], "What to time.")
_STRATEGY = flags.DEFINE_string("strategy", None, "vmap or unroll.")
_ROOT = flags.DEFINE_string("root", "/tmp/benchmark_replicas", "Wiped.")
_ROUNDS = flags.DEFINE_integer(
  "rounds", 1, "Alternating rounds of the modes; the ratio is their median's."
)

_STEPS = ("jit(train_step)", "jit(replica_step)")
_COMPILATIONS = compilations.Compilations()
_COMPILES, _SECONDS = _COMPILATIONS.counts, _COMPILATIONS.seconds


def _configs(method: str, size: int):
  runs = [(fold, seed) for seed in range(3) for fold in range(5)][:size]
  configs = []
  for fold, seed in runs:
    config = _CONFIG.value.copy_and_resolve_references()
    config.method, config.seed, config.data.fold = method, seed, fold
    configs.append(config)
  return configs


def _examples(results: dict, batch_size: int) -> int:
  steps = sum(
    phase["steps"]
    for record in results["task_records"]
    for phase in record.get("phases", {}).values()
  )
  return steps * batch_size


def _time(mode: str, configs, root: str) -> dict:
  shutil.rmtree(root, ignore_errors=True)
  workdirs = [os.path.join(root, f"run{i}") for i in range(len(configs))]
  _COMPILATIONS.clear()
  start = time.perf_counter()
  if mode == "sequential":
    outs = [
      experiments.run(c, w) for c, w in zip(configs, workdirs, strict=True)
    ]
  else:
    outs = experiments.run_replicas(configs, workdirs, _STRATEGY.value)
  wall = time.perf_counter() - start
  for out in outs:
    if isinstance(out, BaseException):
      raise out
  examples = sum(_examples(o, configs[0].train.batch_size) for o in outs)
  return {
    "wall_s": wall,
    "examples": examples,
    "examples_per_s": examples / wall,
    "compiles": {k: _COMPILES[k] for k in _STEPS},
    "compile_s": sum(_SECONDS[k] for k in _STEPS),
    "all_compile_s": sum(_SECONDS.values()),
  }


def _read(root: str, mode: str, index: int) -> dict:
  with open(os.path.join(root, mode, f"run{index}", "results.json")) as f:
    return json.load(f)


def main(argv):
  del argv
  _COMPILATIONS.start()
  experiments.start_process()
  print(f"device: {jax.devices()[0].device_kind}, strategy: {_STRATEGY.value}")
  for method in _METHODS.value:
    warm = _configs(method, 1)[0]
    warm.train.fit.max_steps = 2
    experiments.run(warm, os.path.join(_ROOT.value, "warm"), fresh=True)
    for size in map(int, _REPLICAS.value):
      _measure(method, size)


def _measure(method: str, size: int) -> None:
  """Every mode of R=`size` runs of `method`, `--rounds` times alternating;
  prints each, the runs' largest difference and the median ratio."""
  configs = _configs(method, size)
  rates = {mode: [] for mode in _MODES.value}
  for _ in range(_ROUNDS.value):
    for mode in _MODES.value:
      root = os.path.join(_ROOT.value, mode)
      f = _time(mode, configs, root)
      rates[mode].append(f["examples_per_s"])
      print(
        f"{method} R={size} {mode}: {f['wall_s']:.1f} s, "
        f"{f['examples']} examples, {f['examples_per_s']:.1f} examples/s, "
        f"compilations {f['compiles']} ({f['compile_s']:.1f} s; all "
        f"functions {f['all_compile_s']:.1f} s)",
        flush=True,
      )
  if len(rates) != 2:
    return
  difference = max(
    results.largest_difference(
      *(_read(_ROOT.value, m, i) for m in _MODES.value)
    )
    for i in range(size)
  )
  ratio = np.median(rates["group"]) / np.median(rates["sequential"])
  print(
    f"{method} R={size}: largest |group - sequential| over every number "
    f"of results.json: {difference:.2g}; group/sequential examples/s "
    f"(medians of {_ROUNDS.value}) {ratio:.2f}x",
    flush=True,
  )


if __name__ == "__main__":
  app.run(main)
