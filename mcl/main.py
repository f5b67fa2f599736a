"""Entry point of every experiment.

  python -m mcl.main --config=configs/gtzan.py --workdir=DIR

`config.experiment` picks the experiment: "continual" (a method over a task
sequence, `mcl.continual.runner`) or "tagging" (one model on the
MagnaTagATune top-50 benchmark, `mcl.tagging.experiment`). Config values
are overridden on the command line, e.g.
`--config.data.fold=2 --config.den.k=8`.
"""

import logging as pylogging

import jax
import tensorflow as tf
from absl import app, flags, logging
from ml_collections import config_flags

from mcl import parallel
from mcl.continual import runner
from mcl.tagging import experiment

EXPERIMENTS = {"continual": runner.run, "tagging": experiment.run}

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.")
flags.mark_flags_as_required(["config", "workdir"])


class _QuietLibraries(pylogging.Filter):
  """Drops INFO records of chatty libraries (Orbax logs every file op)."""

  def filter(self, record: pylogging.LogRecord) -> bool:
    return record.levelno >= pylogging.WARNING or "/orbax/" not in (
      record.pathname
    )


def main(argv):
  del argv
  logging.get_absl_handler().addFilter(_QuietLibraries())
  # tf.data only; keep TensorFlow off any accelerator JAX uses.
  tf.config.set_visible_devices([], "GPU")
  parallel.initialize()  # Several processes: join before touching devices.
  logging.info(
    "JAX process %d/%d, devices: %s",
    jax.process_index(),
    jax.process_count(),
    jax.devices(),
  )
  config = _CONFIG.value
  if config.experiment not in EXPERIMENTS:
    raise app.UsageError(
      f"unknown experiment {config.experiment!r}; known: {sorted(EXPERIMENTS)}"
    )
  EXPERIMENTS[config.experiment](config, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
