"""The experiments mcl runs, and what a process does before running them.

`config.experiment` picks one: "continual" (a method over a task sequence,
`mcl.continual.runner`) or "tagging" (one model on the MagnaTagATune
top-50 benchmark, `mcl.tagging.experiment`). `mcl.main` runs one per
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

from mcl import errors, logs, parallel
from mcl.continual import runner
from mcl.tagging import experiment

EXPERIMENTS = {"continual": runner.run, "tagging": experiment.run}


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

  The config is first written to `<workdir>/config.json`: what
  `mcl.predict` reads to featurise new audio as the run did.

  Raises:
    mcl.errors.UserError: an unknown experiment (and whatever the
      experiment raises).
  """
  if config.experiment not in EXPERIMENTS:
    raise errors.UserError(
      f"unknown experiment {config.experiment!r}; known: {sorted(EXPERIMENTS)}"
    )
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      json.dump(config.to_dict(), f, indent=1)
  return EXPERIMENTS[config.experiment](config, workdir)
