"""What an entry point logs: mcl's own lines; libraries only when asked.

tf.data, TFDS, Orbax, clu and JAX log INFO lines for every dataset read,
checkpoint file and scalar write. At absl's default verbosity (0) only
records from mcl's own code (`mcl/`, `launch/`) at INFO, and every
library's WARNING and above, reach the log; TFDS's progress bars are off
(the build logs its own summary). `--verbosity=1` restores everything.
TensorFlow's C++ start-up lines come before any of this and stay.
"""

import logging as pylogging
import os

import tensorflow_datasets as tfds
from absl import logging

# Folders whose INFO records are mcl's own: the package and its scripts.
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OWN = (
  _PACKAGE + os.sep,
  os.path.join(os.path.dirname(_PACKAGE), "launch") + os.sep,
)


class _OwnInfoOnly(pylogging.Filter):
  """Passes WARNING and above, and INFO of mcl's own files."""

  def filter(self, record: pylogging.LogRecord) -> bool:
    return record.levelno >= pylogging.WARNING or record.pathname.startswith(
      _OWN
    )


_FILTER = _OwnInfoOnly()


def configure() -> None:
  """Installs the library filter unless `--verbosity` is 1 or more.

  Call once per process after flags are parsed (inside `main`); calling
  again is harmless.
  """
  # On the handler: library loggers (jax, tf) reach it without passing
  # through the absl logger.
  handler = logging.get_absl_handler()
  if logging.get_verbosity() >= logging.DEBUG:
    handler.removeFilter(_FILTER)
    return
  handler.addFilter(_FILTER)
  tfds.disable_progress_bar()
