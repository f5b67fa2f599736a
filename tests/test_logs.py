"""Library INFO lines are off at the default verbosity, on at 1."""

import logging as pylogging
import os

from absl import logging

from mcl.runtime import logs


def _record(path, level):
  return pylogging.LogRecord("absl", level, path, 1, "message", (), None)


def test_only_own_info_passes_until_verbosity_is_raised():
  handler = logging.get_absl_handler()
  own = os.path.join(
    os.path.dirname(logs.__file__), os.pardir, "trainer", "fit.py"
  )
  library = "/venv/lib/python3.11/site-packages/orbax/checkpoint/manager.py"
  # set_verbosity sets the absl logger's level; restore the level itself
  # (NOTSET under pytest), not a verbosity, or later tests lose INFO.
  before = logging.get_absl_logger().level
  try:
    logging.set_verbosity(logging.INFO)
    logs.configure()
    assert handler.filter(_record(own, pylogging.INFO))
    assert not handler.filter(_record(library, pylogging.INFO))
    assert handler.filter(_record(library, pylogging.WARNING))
    logging.set_verbosity(logging.DEBUG)  # --verbosity=1
    logs.configure()
    assert handler.filter(_record(library, pylogging.INFO))
  finally:
    logging.get_absl_logger().setLevel(before)
    handler.removeFilter(logs._FILTER)
