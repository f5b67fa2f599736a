"""A run's folder: what the run is, who is using it, and starting afresh.

A workdir holds one run. Its identity is the run's *fingerprint*: every
config setting that changes what the run computes (data, fold, seed,
tasks, method and its hyper-parameters, model, budget), i.e. the whole
config but `NOT_IDENTITY`, with folder paths made absolute. It is
`<workdir>/config.json`, written (atomically) before the run computes
anything. A re-run into a workdir that holds results or checkpoints of
another fingerprint is refused with one line naming the differing keys,
so a finished run is never relabelled and an interrupted one never
resumed on another fold or seed; `fresh=True` (`mcl.main --fresh`) first
moves the old run aside to `<workdir>.<UTC time>` and starts anew.

While a run is in its workdir, process 0 holds an exclusive `flock` on
`<workdir>/.lock` (it names the holder's host and pid); a second process
is refused. The operating system drops the lock when its holder dies, so
a killed run's lock is taken over by the next run without a word.
"""

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator

import jax
import ml_collections
from absl import logging

from mcl.runtime import atomic_files, errors

CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"
# Settings that say where things are kept, not what is computed: the TFDS
# records' folder (records are keyed by their own content and settings).
NOT_IDENTITY = ("data.data_dir",)
# What a run has computed: its presence makes the fingerprint binding.
RUN_STATE = ("checkpoints", "latest", "best", "nonfinite", "results.json")


def fingerprint(config: dict) -> dict:
  """The settings that make a run what it is, flattened.

  Args:
    config: `ConfigDict.to_dict()` of a run, or its config.json.

  Returns:
    {dotted key: JSON value} over every leaf but `NOT_IDENTITY`; tuples
    as lists, `*_dir` paths absolute and resolved.
  """
  flat = {}

  def walk(tree, prefix):
    for key, value in tree.items():
      if isinstance(value, dict):
        walk(value, f"{prefix}{key}.")
      else:
        flat[f"{prefix}{key}"] = value

  walk(json.loads(json.dumps(config)), "")
  for key, value in flat.items():
    if key.endswith("_dir") and isinstance(value, str) and value:
      flat[key] = os.path.realpath(value)
  for key in NOT_IDENTITY:
    flat.pop(key, None)
  return flat


def differences(started: dict, current: dict) -> list[str]:
  """Keys whose values differ between two fingerprints, sorted."""
  missing = object()
  return sorted(
    key
    for key in set(started) | set(current)
    if started.get(key, missing) != current.get(key, missing)
  )


def has_run_state(workdir: str) -> bool:
  """Whether `workdir` holds checkpoints or results of a run."""
  return any(os.path.exists(os.path.join(workdir, n)) for n in RUN_STATE)


@contextlib.contextmanager
def open_run(
  config: ml_collections.ConfigDict, workdir: str, fresh: bool = False
) -> Iterator[None]:
  """Takes `workdir` for a run of `config` for the duration of the block.

  Creates the folder, takes its lock (process 0), removes temporaries of
  killed writers, checks the fingerprint against config.json and writes
  config.json when the run has computed nothing yet.

  Args:
    config: the validated run config.
    workdir: the run's folder.
    fresh: move an existing run of `workdir` aside first (single process
      only).

  Raises:
    mcl.runtime.errors.UserError: `workdir` is a file or cannot be created,
      another process holds it, its config.json is missing or unreadable
      while it holds run state, or it holds a run of another fingerprint (the
      message lists the differing keys with both values).
  """
  _make_folder(workdir)
  with contextlib.ExitStack() as stack:
    if jax.process_index() == 0:
      stack.enter_context(_lock(workdir))
      if fresh and has_run_state(workdir):
        stack.close()
        moved = _move_aside(workdir)
        logging.warning("Moved the previous run of %s to %s", workdir, moved)
        _make_folder(workdir)
        stack.enter_context(_lock(workdir))
      for path in atomic_files.remove_temporaries(workdir):
        logging.info("Removed %s, left by a killed writer", path)
    elif fresh:
      raise errors.UserError(
        "--fresh moves a run aside and works with one process only; move "
        f"{workdir} aside by hand"
      )
    _check_identity(config, workdir)
    yield


def _make_folder(workdir: str) -> None:
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise errors.UserError(
      f"--workdir={workdir}: is a file, not a folder; pick another path"
    )
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise errors.UserError(
      f"--workdir={workdir}: cannot be created ({e.strerror}); pick a "
      "writable path"
    ) from e


@contextlib.contextmanager
def _lock(workdir: str) -> Iterator[None]:
  path = os.path.join(workdir, LOCK_FILE)
  f = open(path, "a+")  # noqa: SIM115 - held open for the lock's life
  try:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or "another process"
      raise errors.UserError(
        f"{workdir} is in use by {holder}; wait for it to end or use "
        "another --workdir"
      ) from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    yield
  finally:
    f.close()  # Releases the lock.


def _move_aside(workdir: str) -> str:
  stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
  target = f"{os.path.normpath(workdir)}.{stamp}"
  os.rename(workdir, target)
  return target


def _check_identity(config: ml_collections.ConfigDict, workdir: str) -> None:
  path = os.path.join(workdir, CONFIG_FILE)
  current = fingerprint(config.to_dict())
  started = None
  if os.path.exists(path):
    try:
      with open(path) as f:
        started = fingerprint(json.load(f))
    except (OSError, ValueError, AttributeError) as e:
      if has_run_state(workdir):
        raise errors.UserError(
          f"{path}: unreadable ({e}) but the folder holds a run; restore "
          "the file, or re-run with --fresh to move the run aside"
        ) from e
      started = None  # A run that computed nothing: start it anew.
  elif has_run_state(workdir):
    raise errors.UserError(
      f"{workdir} holds a run but no {CONFIG_FILE}, so what it is cannot "
      "be checked; use another --workdir, or --fresh to move it aside"
    )
  if started is not None and has_run_state(workdir):
    changed = differences(started, current)
    if changed:
      listed = ", ".join(
        f"{k} ({started.get(k)!r} -> {current.get(k)!r})" for k in changed
      )
      raise errors.UserError(
        f"{workdir} holds a run of other settings: {listed}; use another "
        "--workdir, or --fresh to move the old run aside"
      )
    return
  if jax.process_index() == 0:
    atomic_files.write_json(path, json.loads(json.dumps(config.to_dict())))
