"""Runs sweep runs one after another in one process (`mcl.sweep`).

  python -m mcl.analysis.sweep_worker < requests.jsonl

Reads one JSON object per line from stdin, {"config": file, "runs":
[{"overrides": {dotted key: value}, "workdir": dir}, ...], "replicas": N}:
one run, or a replica group (runs that differ only in seed and fold), run
as one program by `mcl.experiments.run_replicas` (with N = 0, automatic:
on a CPU one after another instead, `serve`). Each run logs to
`<workdir>/log.txt` (a group's runs each from their own thread) and the
worker answers one JSON line on stdout, {"ok": [bool per run]}. Imports,
the records' metadata, the evaluation sets' compiled functions and every
compiled step stay in the process for the next request: a GTZAN run
started in a fresh process spends about 9 s importing and 6 s on its
evaluation sets before its first step. A run that raises is logged with
its traceback (a `mcl.runtime.errors.UserError`, e.g. a setting out of
range, as its one line) and answered false; the worker goes on with the
next.
"""

import json
import logging as pylogging
import os
import sys
import traceback

import jax
from absl import logging

from mcl import experiments
from mcl.experiments.continual import replica_group
from mcl.runtime import errors


def _log_file(workdir: str, thread: str | None) -> pylogging.Handler:
  """A handler writing to `<workdir>/log.txt` the records of `thread`
  (None: of every thread)."""
  os.makedirs(workdir, exist_ok=True)
  handler = pylogging.FileHandler(os.path.join(workdir, "log.txt"))
  handler.setFormatter(logging.PythonFormatter())
  if thread is not None:
    handler.addFilter(lambda record: record.threadName == thread)
  logging.get_absl_logger().addHandler(handler)
  return handler


def _report(workdir: str, outcome) -> bool:
  """Logs a failed run's error; True for a finished run."""
  if isinstance(outcome, errors.UserError):  # A setting: no traceback.
    logging.error("run %s failed: error: %s", workdir, outcome)
  elif isinstance(outcome, BaseException):
    trace = traceback.format_exception(outcome)
    logging.error("run %s failed:\n%s", workdir, "".join(trace))
  return not isinstance(outcome, BaseException)


def _close(handler: pylogging.Handler) -> None:
  logging.get_absl_logger().removeHandler(handler)
  handler.close()


def _alone(config_file: str, run: dict) -> bool:
  """One run (`mcl.experiments.run`); True when it finished."""
  handler = _log_file(run["workdir"], None)
  try:
    config = experiments.load_config(config_file, run["overrides"])
    outcome = experiments.run(config, run["workdir"])
  except Exception as error:  # A failed run must not end the sweep.
    outcome = error
  try:
    return _report(run["workdir"], outcome)
  finally:
    _close(handler)


def _group(config_file: str, runs: list[dict]) -> list[bool]:
  """Runs as one replica group (`mcl.experiments.run_replicas`)."""
  workdirs = [run["workdir"] for run in runs]
  handlers = [
    _log_file(w, replica_group.thread_name(i)) for i, w in enumerate(workdirs)
  ]
  try:
    try:
      configs = [
        experiments.load_config(config_file, run["overrides"]) for run in runs
      ]
      outcomes = experiments.run_replicas(configs, workdirs)
    except errors.UserError as error:  # E.g. runs of other settings.
      outcomes = [error] * len(runs)
    ok = []
    for workdir, outcome, handler in zip(
      workdirs, outcomes, handlers, strict=True
    ):
      handler.filters.clear()  # The error is logged from this thread.
      ok.append(_report(workdir, outcome))
    return ok
  finally:
    for handler in handlers:
      _close(handler)


def serve(request: dict) -> list[bool]:
  """A request's runs: alone, or as one replica group unless
  `request["replicas"]` is 0 (automatic) and the backend is the CPU,
  where a group is no faster than its runs one after another."""
  runs = request["runs"]
  automatic = request.get("replicas") == 0
  if len(runs) == 1 or (automatic and jax.default_backend() == "cpu"):
    return [_alone(request["config"], run) for run in runs]
  return _group(request["config"], runs)


def main():
  """Answers every request of stdin (see the module docstring)."""
  answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
  sys.stdout = sys.stderr  # Only answers go to the protocol stream.
  logging.use_absl_handler()
  logging.set_verbosity(logging.INFO)
  experiments.start_process()
  for line in sys.stdin:
    answers.write(json.dumps({"ok": serve(json.loads(line))}) + "\n")


if __name__ == "__main__":
  main()
