"""Runs a sweep of `mcl.main` runs locally, or prints their command lines,
then aggregates the finished runs into results.md, results.csv and plots.

  .venv/bin/python launch/sweep.py --sweep=configs/sweeps/gtzan_comparison.py \
      [--root=runs/comparison] [--parallel=2] [--seeds=0,1,2] \
      [--print_only] [--aggregate_only]

Finished runs (complete results.json) are skipped, so an interrupted sweep
continues where it stopped (each run also resumes from its last task
checkpoint). `--parallel` worker processes (`launch/sweep_worker.py`)
each run one run after another, so imports and compilations are paid once
per worker, not once per run; every worker also shares one persistent XLA
compilation cache under `<root>/jax_cache`. Each run logs to
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

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_HERE))

from mcl import report, sweep  # noqa: E402

_SWEEP = flags.DEFINE_string("sweep", None, "Sweep definition file.")
_ROOT = flags.DEFINE_string("root", "runs/comparison", "Output root.")
_PARALLEL = flags.DEFINE_integer(
  "parallel", 2, "Worker processes (runs at a time)."
)
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds (get_sweep(seeds=...)).")
_THREADS = flags.DEFINE_integer(
  "threads", 1, "CPU threads per run (XLA and TensorFlow); 0: library default."
)
_PRINT_ONLY = flags.DEFINE_bool(
  "print_only", False, "Print the command lines of unfinished runs only."
)
_AGGREGATE_ONLY = flags.DEFINE_bool(
  "aggregate_only", False, "Only aggregate the finished runs."
)
flags.mark_flag_as_required("sweep")


def load_sweep(path: str, seeds) -> sweep.Sweep:
  spec = importlib.util.spec_from_file_location("sweep_definition", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_sweep(seeds=seeds)


def environment(threads: int, root: str) -> dict:
  env = dict(os.environ)
  # One persistent XLA cache for the sweep: runs of one config compile the
  # same steps (measured: 9 s of a 36 s GTZAN run is compilation).
  env.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.abspath(os.path.join(root, "jax_cache")),
  )
  env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.05")
  if threads:
    env["XLA_FLAGS"] = (
      env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
      f" intra_op_parallelism_threads={threads}"
    ).strip()
    env["TF_NUM_INTRAOP_THREADS"] = str(threads)
    env["TF_NUM_INTEROP_THREADS"] = str(threads)
  return env


def _worker_loop(index, queue, definition, root, env, report_done) -> None:
  """One `sweep_worker.py` process fed runs from `queue` until it is empty.

  A worker that dies fails its current run and is replaced.
  """
  worker = None
  while True:
    try:
      run = queue.get_nowait()
    except _queue.Empty:
      break
    if worker is None or worker.poll() is not None:
      log = open(os.path.join(root, f"worker{index}.log"), "a")
      worker = subprocess.Popen(
        [sys.executable, os.path.join(_HERE, "sweep_worker.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
        text=True,
      )
    request = {
      "config": definition.config,
      "overrides": dict(run.overrides),
      "workdir": sweep.workdir(root, run),
    }
    worker.stdin.write(json.dumps(request) + "\n")
    worker.stdin.flush()
    answer = worker.stdout.readline()
    report_done(run, bool(answer) and json.loads(answer)["ok"])
  if worker is not None and worker.poll() is None:
    worker.stdin.close()
    worker.wait()


def run_all(definition: sweep.Sweep, root: str, parallel: int, env) -> int:
  """Runs the unfinished runs on `parallel` worker processes (each runs
  one run after another, `sweep_worker.py`); returns failures."""
  pending = [r for r in definition.runs if not sweep.finished(root, r)]
  logging.info(
    "%d runs, %d finished, %d to run, %d workers",
    len(definition.runs),
    len(definition.runs) - len(pending),
    len(pending),
    parallel,
  )
  os.makedirs(root, exist_ok=True)
  queue = _queue.Queue()
  for run in pending:
    queue.put(run)
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
      args=(i, queue, definition, root, env, report_done),
    )
    for i in range(min(parallel, len(pending)))
  ]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  logging.info("%d runs in %.1f min", len(pending), (time.time() - start) / 60)
  return counts["failed"]


def main(argv):
  del argv
  definition = load_sweep(_SWEEP.value, [int(s) for s in _SEEDS.value])
  root = _ROOT.value
  if _PRINT_ONLY.value:
    for run in definition.runs:
      if not sweep.finished(root, run):
        print(sweep.shell_line(sweep.command(run, definition.config, root)))
    return
  failures = 0
  if not _AGGREGATE_ONLY.value:
    failures = run_all(
      definition, root, _PARALLEL.value, environment(_THREADS.value, root)
    )
  order = list(dict.fromkeys(r.label for r in definition.runs))
  report.write_report(root, order)
  with open(os.path.join(root, "results.md")) as f:
    print(f.read())
  if failures:
    sys.exit(f"{failures} runs failed; see their log.txt")


if __name__ == "__main__":
  app.run(main)
