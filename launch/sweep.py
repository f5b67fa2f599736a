"""Runs a sweep of `mcl.main` runs locally, or prints their command lines,
then aggregates the finished runs into results.md, results.csv and plots.

  .venv/bin/python launch/sweep.py --sweep=configs/sweeps/gtzan_comparison.py \
      [--root=runs/comparison] [--parallel=2] [--seeds=0,1,2] \
      [--print_only] [--aggregate_only]

Finished runs (complete results.json) are skipped, so an interrupted sweep
continues where it stopped (each run also resumes from its last task
checkpoint). Each run logs to `<root>/<label>/<name>/log.txt`.
"""

import importlib.util
import os
import subprocess
import sys
import time

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mcl import report, sweep  # noqa: E402

_SWEEP = flags.DEFINE_string("sweep", None, "Sweep definition file.")
_ROOT = flags.DEFINE_string("root", "runs/comparison", "Output root.")
_PARALLEL = flags.DEFINE_integer("parallel", 2, "Runs at a time.")
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


def run_all(definition: sweep.Sweep, root: str, parallel: int, env) -> int:
  """Runs the unfinished runs, `parallel` at a time; returns failures."""
  pending = [r for r in definition.runs if not sweep.finished(root, r)]
  logging.info(
    "%d runs, %d finished, %d to run, %d at a time",
    len(definition.runs),
    len(definition.runs) - len(pending),
    len(pending),
    parallel,
  )
  running, failures, start = [], 0, time.time()
  while pending or running:
    while pending and len(running) < parallel:
      run = pending.pop(0)
      os.makedirs(sweep.workdir(root, run), exist_ok=True)
      log = open(os.path.join(sweep.workdir(root, run), "log.txt"), "a")
      argv = sweep.command(run, definition.config, root, sys.executable)
      running.append(
        (run, subprocess.Popen(argv, stdout=log, stderr=log, env=env), log)
      )
    time.sleep(2.0)
    for item in list(running):
      run, process, log = item
      if process.poll() is None:
        continue
      running.remove(item)
      log.close()
      status = "done" if process.returncode == 0 else "FAILED"
      failures += process.returncode != 0
      logging.info(
        "%s %s/%s (rc %d) at %.1f min; %d left",
        status, run.label, run.name, process.returncode,
        (time.time() - start) / 60, len(pending) + len(running),
      )  # fmt: skip
  return failures


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
