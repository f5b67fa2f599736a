"""Mistakes a user fixes, told apart from bugs.

A `UserError` is raised for a wrong setting, flag or data folder: an
unknown class or method, a task of one class, a missing folder, a class
without clips in a fold, a task the run has not reached. The entry points
(`mcl.main`, `mcl.inspect`, `mcl.predict`, `launch/sweep.py`) run their
`main` through `usage_errors`, which prints it as one line,
`error: <what to change>`, and exits with status 2 (the
convention of argparse and absl's usage errors), without a traceback. Any
other exception is a bug and keeps its traceback.
"""

import functools
import sys
from collections.abc import Callable


class UserError(ValueError):
  """A setting, flag or input the user has to change; the message says how.

  A `ValueError`, so library callers that catch those keep working.
  """


class MissingDataError(UserError, FileNotFoundError):
  """A data file or folder that is not where the config says; the message
  says what to download and where to put it."""


def usage_errors(main: Callable) -> Callable:
  """`main` with every `UserError` printed as one line, exit status 2.

  Args:
    main: an absl `main(argv)`.

  Returns:
    The wrapped function, for `absl.app.run`.
  """

  @functools.wraps(main)
  def wrapped(argv):
    try:
      return main(argv)
    except UserError as error:
      sys.stderr.write(f"error: {error}\n")
      sys.exit(2)

  return wrapped
