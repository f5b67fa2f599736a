"""The experiments mcl runs, and what a process does before running them.

`config.experiment` picks one: "continual" (a method over a task sequence,
`mcl.experiments.continual.runner`), "tagging" (one model on the MagnaTagATune
top-50 benchmark, `mcl.experiments.tagging`) or "feature_dnn" (a
network on FMA's 518 track features, `mcl.experiments.feature_dnn`). `mcl.main`
runs one per process; `mcl.analysis.sweep_worker` runs many in one process
(imports, records and compiled steps are paid once).
"""

import importlib
import importlib.util
import os
import pkgutil
from collections.abc import Callable, Mapping, Sequence

import jax
import ml_collections
import tensorflow as tf
from absl import logging

from mcl.experiments import config_checks, feature_dnn, tagging
from mcl.experiments.continual import replica_group, runner
from mcl.runtime import errors, logs
from mcl.runtime import workdir as run_folder
from mcl.trainer import fit, parallel

EXPERIMENTS = {
  "continual": runner.run,
  "tagging": tagging.run,
  "feature_dnn": feature_dnn.run,
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


def config_file(name: str, package: str = "mcl.configs") -> str:
  """The file of a config given by its path or by its built-in name.

  Args:
    name: an existing file (`configs/gtzan.py`), or the name of a module
      of `package` (`gtzan`: the installed `mcl/configs/gtzan.py`; sweeps
      and protocols with `package="mcl.configs.sweeps"`).
    package: where built-in names are looked up.

  Raises:
    mcl.runtime.errors.UserError: neither a file nor a built-in name (the
      message lists the built-in ones).
  """
  if os.path.isfile(name):
    return name
  folder = importlib.import_module(package).__path__
  known = sorted(m.name for m in pkgutil.iter_modules(folder) if not m.ispkg)
  if name not in known:
    raise errors.UserError(
      f"config {name!r}: no such file, nor a built-in config; built-in: {known}"
    )
  return importlib.util.find_spec(f"{package}.{name}").origin


def load_config(
  path: str, overrides: Mapping[str, object] | None = None
) -> ml_collections.ConfigDict:
  """`get_config()` of a config file, with dotted overrides applied.

  Args:
    path: a config file (`configs/gtzan.py`) or a built-in config's name
      (`gtzan`; `config_file`).
    overrides: {"train.fit.max_steps": 40, ...}, as `--config.<key>=`.

  Raises:
    KeyError: an override names no existing field.
    mcl.runtime.errors.UserError: no such config.
  """
  path = config_file(path)
  spec = importlib.util.spec_from_file_location("experiment_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise errors.UserError(
      f"{path} has no get_config(): shared settings of other configs, not "
      "a config to run"
    )
  config = module.get_config()
  config.update_from_flattened_dict(dict(overrides or {}))
  return config


def run(
  config: ml_collections.ConfigDict,
  workdir: str,
  fresh: bool = False,
  data=None,
  fitter: Callable[..., fit.FitResult] = fit.fit,
) -> dict:
  """Runs `config.experiment` in `workdir`; returns its results.json.

  The run takes its workdir first (`mcl.runtime.workdir.open_run`): a lock, and
  config.json, the run's fingerprint, written before anything is computed
  (what `mcl.predict` reads to featurise new audio as the run did). A
  re-run into a workdir of another fingerprint is refused; one of the same
  resumes where it stopped.

  Args:
    config: the experiment config.
    workdir: the run's folder.
    fresh: move a previous run of `workdir` aside and start anew.
    data: for a continual experiment, the task data to learn instead of
      `config.data`'s: `mcl.datasets.arrays.from_arrays(...)` (with
      `config.data.source = "arrays"`), drawn in `config.train`'s batch
      sizes.
    fitter: a continual experiment's phase trainer (`run_replicas`);
      `mcl.trainer.fit.fit` by default.

  Raises:
    mcl.runtime.errors.UserError: a setting out of its range or an unknown name
      (`mcl.experiments.config_checks`, before anything is written), a busy
      workdir, or one that holds a run of other settings (and whatever the
      experiment raises).
  """
  config_checks.validate(config)
  if (data is None) == (config.data.source == "arrays"):
    raise errors.UserError(
      'data= goes with config.data.source="arrays" (and only with it); '
      "build it with mcl.datasets.arrays.from_arrays"
    )
  with run_folder.open_run(config, workdir, fresh=fresh):
    if data is not None:
      batches = config.train.batch_size, config.train.eval_batch_size
      data = data.with_batches(*batches)
      return runner.run(config, workdir, data=data, fitter=fitter)
    if config.experiment == "continual":
      return runner.run(config, workdir, fitter=fitter)
    return EXPERIMENTS[config.experiment](config, workdir)


def run_replicas(
  configs: Sequence[ml_collections.ConfigDict],
  workdirs: Sequence[str],
  strategy: str | None = None,
) -> list:
  """Continual runs that differ only in seed and fold, as one replica
  group (`mcl.experiments.continual.replica_group`): each run's
  results.json equals the run done alone by `run` up to float rounding,
  which over a long sequence can flip DEN's split and expansion
  decisions (BUILD_NOTES "Replica groups").

  Args:
    configs: continual experiment configs, equal but for
      `replica_group.REPLICA_KEYS`.
    workdirs: one folder per config; each run resumes in it as `run`'s.
    strategy: `mcl.trainer.replicas.STRATEGIES`, or None for the
      backend's default.

  Returns:
    Per run, in order: its results.json, or the exception it raised.

  Raises:
    mcl.runtime.errors.UserError: configs that differ in other settings.
  """
  return replica_group.run_group(
    lambda config, workdir, fitter: run(config, workdir, fitter=fitter),
    configs,
    workdirs,
    strategy,
  )
