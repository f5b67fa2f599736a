"""The experiments mcl runs, and what a process does before running them.

`config.experiment` picks one: "continual" (a method over a task sequence,
`mcl.continual.runner`), "tagging" (one model on the MagnaTagATune
top-50 benchmark, `mcl.tagging.experiment`) or "track_features" (a
network on FMA's 518 track features, `mcl.track_dnn`). `mcl.main` runs one per
process; `launch/sweep_worker.py` runs many in one process (imports,
records and compiled steps are paid once).
"""

import importlib.util
import json
import os
from collections.abc import Mapping

import jax
import ml_collections
import tensorflow as tf
from absl import logging

from mcl import errors, logs, parallel, track_dnn
from mcl.continual import runner
from mcl.tagging import experiment

EXPERIMENTS = {
  "continual": runner.run,
  "tagging": experiment.run,
  "track_features": track_dnn.run,
}


def start_process() -> None:
  """Quiet logs, TensorFlow off the accelerators, join the other processes.

  Call once per process, before any experiment.
  """
  logs.configure()
  # tf.data only; keep TensorFlow off any accelerator JAX uses.
  tf.config.set_visible_devices([], "GPU")
  parallel.initialize()  # Several processes: join before touching devices.
  logging.info(
    "JAX process %d/%d, devices: %s",
    jax.process_index(),
    jax.process_count(),
    jax.devices(),
  )


def load_config(
  path: str, overrides: Mapping[str, object] | None = None
) -> ml_collections.ConfigDict:
  """`get_config()` of a config file, with dotted overrides applied.

  Args:
    path: a `configs/*.py` file.
    overrides: {"train.fit.max_steps": 40, ...}, as `--config.<key>=`.

  Raises:
    KeyError: an override names no existing field.
  """
  spec = importlib.util.spec_from_file_location("experiment_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.update_from_flattened_dict(dict(overrides or {}))
  return config


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs `config.experiment` in `workdir`; returns its results.json.

  A fresh run first writes its config to `<workdir>/config.json` (what
  `mcl.predict` reads to featurise new audio as the run did); a resumed
  run must agree with it on `PINNED` (the budget may change).

  Raises:
    mcl.errors.UserError: an unknown experiment, or a resume whose pinned
      settings differ from the run's (and whatever the experiment raises).
  """
  if config.experiment not in EXPERIMENTS:
    raise errors.UserError(
      f"unknown experiment {config.experiment!r}; known: {sorted(EXPERIMENTS)}"
    )
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "config.json")
  current = json.loads(json.dumps(config.to_dict()))  # Tuples as lists.
  if os.path.exists(path):
    with open(path) as f:
      started = json.load(f)
    for key in PINNED:
      if _lookup(started, key) != _lookup(current, key):
        raise errors.UserError(
          f"{workdir} was started with {key}={_lookup(started, key)!r}, "
          f"not {_lookup(current, key)!r}; use another --workdir"
        )
  elif jax.process_index() == 0:
    with open(path, "w") as f:
      json.dump(current, f, indent=1)
  return EXPERIMENTS[config.experiment](config, workdir)


# What a resumed run may not change: how audio becomes inputs and what
# the model and tasks are (`mcl.predict` relies on config.json for them).
PINNED = (
  "experiment",
  "method",
  "tasks",
  "features",
  "input",
  "model",
  "data.chunk_seconds",
  "data.eval_chunks",
  "train.eval_chunks",
)


def _lookup(tree: dict, key: str):
  for part in key.split("."):
    tree = tree.get(part) if isinstance(tree, dict) else None
  return tree
