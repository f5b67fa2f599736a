"""Runs a sweep or a tuning protocol of `mcl.main` runs locally, or prints
their command lines, then aggregates the finished runs into tables and plots.

  mcl-sweep --sweep=permuted_digits ...   (installed; a built-in sweep)
  .venv/bin/python launch/sweep.py --sweep=configs/sweeps/permuted_digits.py \
      [--root=runs/comparison] [--parallel=2] [--seeds=0,1,2] \
      [--replicas=N] [--print_only] [--aggregate_only]
  .venv/bin/python launch/sweep.py --protocol=configs/sweeps/gtzan_protocol.py \
      --budget=cpu --seeds=0,1 --root=runs/protocol_cpu [--print_only]

A protocol (`mcl.analysis.protocol`) runs in three stages: its tuning runs, the
per-fold selection on validation figures (`<root>/selection.md`), then the
final runs with the selected values; the report of `<root>/final`
(`results.md`, `paired.md`, `results.csv`, plots) lies beside the
selection in `<root>`. With `--print_only` it prints the tuning commands
until they have all finished, then selects and prints the final ones: run
it again after the first batch on a cluster.

Finished runs (complete results.json) are skipped, so an interrupted sweep
or protocol continues where it stopped (each run also resumes from its
last task checkpoint). `--parallel` worker processes
(`mcl.analysis.sweep_worker`)
each run one replica group after another, so imports and compilations are
paid once per worker, not once per run; every worker also shares one
persistent XLA compilation cache under `<root>/jax_cache`. A replica
group (`--replicas`, `mcl.analysis.sweep.replica_groups`) is up to N runs
of one grid point (the same label and overrides but for seed and fold),
trained as one program (`mcl.experiments.run_replicas`); the default,
0, groups all of a grid point on a GPU or TPU and runs them one after
another on a CPU, where a group is no faster (BUILD_NOTES "Performance
figures"; the worker decides, as only it initialises JAX). Each run logs to
`<root>/<label>/<name>/log.txt`, each worker to `<root>/worker<i>.log`.
"""

import importlib.util
import json
import os
import queue as _queue
import subprocess
import sys
import threading
import time

from absl import app, flags, logging

from mcl import experiments
from mcl.analysis import protocol, report, sweep
from mcl.runtime import errors

_SWEEP = flags.DEFINE_string("sweep", None, "Sweep definition file.")
_PROTOCOL = flags.DEFINE_string(
  "protocol", None, "Protocol definition file (instead of --sweep)."
)
_BUDGET = flags.DEFINE_string(
  "budget",
  "cpu",
  "A protocol's training budget (its BUDGETS); --protocol only.",
)
_ROOT = flags.DEFINE_string("root", "runs/comparison", "Output root.")
_PARALLEL = flags.DEFINE_integer(
  "parallel", 2, "Worker processes (runs at a time)."
)
_SEEDS = flags.DEFINE_list(
  "seeds",
  None,
  "Seeds (get_sweep/get_protocol(seeds=...)); default: the file's.",
)
_REPLICAS = flags.DEFINE_integer(
  "replicas",
  0,
  "Runs per replica group: the runs of a grid point (seeds x folds) "
  "trained as one program (mcl.experiments.run_replicas); 0: automatic, "
  "all of a grid point on a GPU or TPU, one at a time on a CPU; 1: each "
  "run alone.",
)
_THREADS = flags.DEFINE_integer(
  "threads", 1, "CPU threads per run (XLA and TensorFlow); 0: library default."
)
_PRINT_ONLY = flags.DEFINE_bool(
  "print_only", False, "Print the command lines of unfinished runs only."
)
_AGGREGATE_ONLY = flags.DEFINE_bool(
  "aggregate_only", False, "Only aggregate the finished runs."
)
flags.mark_flags_as_mutual_exclusive(["sweep", "protocol"], required=True)


def load_definition(path: str):
  if not os.path.isfile(path):
    raise errors.UserError(f"{path}: no such sweep or protocol file")
  spec = importlib.util.spec_from_file_location("sweep_definition", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def environment(threads: int, root: str) -> dict:
  env = dict(os.environ)
  # Workers import mcl as this process does, installed or from a checkout.
  package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = os.pathsep.join(
    p for p in (package_root, env.get("PYTHONPATH")) if p
  )
  # One persistent XLA cache for the sweep: runs of one config compile the
  # same steps (measured: 9 s of a 36 s GTZAN run is compilation).
  env.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.abspath(os.path.join(root, "jax_cache")),
  )
  env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.05")
  # Several workers may share one GPU: none may claim most of its memory.
  env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  if threads:
    env["XLA_FLAGS"] = (
      env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
      f" intra_op_parallelism_threads={threads}"
    ).strip()
    env["TF_NUM_INTRAOP_THREADS"] = str(threads)
    env["TF_NUM_INTEROP_THREADS"] = str(threads)
  return env


# Runs per worker process before it is replaced: every DEN growth compiles
# new shapes and each compiled executable stays in the process; in the
# issue-11 protocol two workers that had run about 33 runs each failed to
# compile for lack of memory.
RUNS_PER_WORKER = 12


def _worker_loop(
  index, queue, config, root, env, report_done, replicas
) -> None:
  """One `mcl.analysis.sweep_worker` process at a time, fed replica
  groups from `queue` until it is empty, replaced after RUNS_PER_WORKER
  runs.

  A worker that dies fails its current group (whose runs resume from
  their last task checkpoints on the next sweep) and is replaced.
  """
  worker, served = None, 0
  while True:
    try:
      group = queue.get_nowait()
    except _queue.Empty:
      break
    if worker is not None and served >= RUNS_PER_WORKER:
      worker.stdin.close()
      worker.wait()
      worker = None
    if worker is None or worker.poll() is not None:
      served = 0
      log = open(os.path.join(root, f"worker{index}.log"), "a")
      worker = subprocess.Popen(
        [sys.executable, "-m", "mcl.analysis.sweep_worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
        text=True,
      )
      log.close()  # The worker holds its own copy.
    request = {
      "config": config,
      "replicas": replicas,
      "runs": [
        {"overrides": dict(run.overrides), "workdir": sweep.workdir(root, run)}
        for run in group
      ],
    }
    worker.stdin.write(json.dumps(request) + "\n")
    worker.stdin.flush()
    answer = worker.stdout.readline()
    served += len(group)
    if not answer:  # The worker died: reap it, start a new one next group.
      worker.wait()
      worker = None
    ok = json.loads(answer)["ok"] if answer else [False] * len(group)
    for run, done in zip(group, ok, strict=True):
      report_done(run, done)
  if worker is not None and worker.poll() is None:
    worker.stdin.close()
    worker.wait()


def run_all(
  runs, config: str, root: str, parallel: int, env, replicas: int = 1
) -> int:
  """Runs the unfinished `runs` of base config `config` on `parallel`
  worker processes (each runs one replica group after another,
  `sweep_worker.py`; `replicas` runs per group, 0: a grid point's,
  grouped on accelerators only); returns failures."""
  pending = [r for r in runs if not sweep.finished(root, r)]
  groups = sweep.replica_groups(pending, replicas)
  logging.info(
    "%d runs, %d finished, %d to run in %d groups, %d workers",
    len(runs),
    len(runs) - len(pending),
    len(pending),
    len(groups),
    parallel,
  )
  os.makedirs(root, exist_ok=True)
  queue = _queue.Queue()
  for group in groups:
    queue.put(group)
  lock, start, counts = threading.Lock(), time.time(), {"done": 0, "failed": 0}

  def report_done(run, ok):
    with lock:
      counts["done"] += 1
      counts["failed"] += not ok
      logging.info(
        "%s %s/%s at %.1f min; %d left",
        "done" if ok else "FAILED", run.label, run.name,
        (time.time() - start) / 60, len(pending) - counts["done"],
      )  # fmt: skip

  threads = [
    threading.Thread(
      target=_worker_loop,
      args=(i, queue, config, root, env, report_done, replicas),
    )
    for i in range(min(parallel, len(groups)))
  ]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  logging.info("%d runs in %.1f min", len(pending), (time.time() - start) / 60)
  return counts["failed"]


def _print_commands(runs, config: str, root: str) -> None:
  for run in runs:
    if not sweep.finished(root, run):
      print(sweep.shell_line(sweep.command(run, config, root)))


def _report(runs_root: str, order, out_dir: str, **kwargs) -> None:
  report.write_report(runs_root, order, out_dir, **kwargs)
  for name in ("results.md", "paired.md"):
    path = os.path.join(out_dir, name)
    if os.path.exists(path):
      with open(path) as f:
        print(f.read())


def run_sweep(path: str, seeds, root: str) -> int:
  """A plain sweep: its runs, then the report; returns failures."""
  definition = load_definition(path).get_sweep(**seeds)
  if _PRINT_ONLY.value:
    _print_commands(definition.runs, definition.config, root)
    return 0
  failures = 0
  if not _AGGREGATE_ONLY.value:
    env = environment(_THREADS.value, root)
    failures = run_all(
      definition.runs,
      definition.config,
      root,
      _PARALLEL.value,
      env,
      _REPLICAS.value,
    )
  _report(root, list(dict.fromkeys(r.label for r in definition.runs)), root)
  return failures


def run_protocol(path: str, seeds, root: str) -> int:
  """Tuning runs, selection, final runs, report; returns failures."""
  definition = load_definition(path).get_protocol(**seeds, budget=_BUDGET.value)
  tuning = protocol.tuning_runs(definition)
  if _PRINT_ONLY.value and not all(sweep.finished(root, r) for r in tuning):
    print("# Tuning runs; when they have finished, run this command again")
    print("# for the final runs.")
    _print_commands(tuning, definition.config, root)
    return 0
  failures = 0
  if _PRINT_ONLY.value or _AGGREGATE_ONLY.value:
    _, plan = protocol.prepare_final(definition, root)
    if _PRINT_ONLY.value:
      _print_commands(plan.runs, definition.config, root)
      return 0
  else:
    env = environment(_THREADS.value, root)
    selection, failures = protocol.run(
      definition,
      root,
      lambda runs: run_all(
        runs, definition.config, root, _PARALLEL.value, env, _REPLICAS.value
      ),
    )
    if selection is None:
      return failures
  with open(os.path.join(root, "selection.md")) as f:
    print(f.read())
  order = list(
    dict.fromkeys(definition.rows.get(v, (v,))[0] for v in definition.variants)
  )
  _report(
    os.path.join(root, "final"),
    order,
    root,
    reference=definition.reference,
    rows=definition.rows,
  )
  return failures


@errors.usage_errors
def main(argv):
  del argv
  seeds = {"seeds": [int(s) for s in _SEEDS.value]} if _SEEDS.value else {}
  sweeps = "mcl.configs.sweeps"
  if _SWEEP.value:
    path = experiments.config_file(_SWEEP.value, sweeps)
    failures = run_sweep(path, seeds, _ROOT.value)
  else:
    path = experiments.config_file(_PROTOCOL.value, sweeps)
    failures = run_protocol(path, seeds, _ROOT.value)
  if failures:
    sys.exit(f"{failures} runs failed; see their log.txt")


def cli() -> None:
  """Console script `mcl-sweep` (and `launch/sweep.py`): `main`."""
  app.run(main)


if __name__ == "__main__":
  cli()
