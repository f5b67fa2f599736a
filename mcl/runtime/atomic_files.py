"""Files written whole or not at all.

Every file a run writes beside its checkpoints (config.json, results.json,
plots, predictions, the protocol's selection and report files) goes
through `replace`: it is written under a temporary name in the same
folder, flushed to disk, then renamed over the target, so a killed
process or a full disk leaves the old file or none, never half of one. A
temporary left by a killed process ends in `TEMPORARY_SUFFIX` and is
removed by `remove_temporaries` when the next run starts in that folder.

A full disk, or any other failed write, is a `mcl.runtime.errors.UserError`
naming the path, printed as one line by the entry points.
"""

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from typing import IO

from mcl.runtime import errors

TEMPORARY_SUFFIX = ".partial"


class WriteError(errors.UserError, OSError):
  """A file that could not be written (full disk, no permission)."""


@contextlib.contextmanager
def replace(path: str, mode: str = "w", **kwargs) -> Iterator[IO]:
  """Opens a temporary beside `path`; renames it over `path` on success.

  Args:
    path: the file to (re)write.
    mode: "w" (text) or "wb" (bytes).
    **kwargs: passed to `open` (e.g. `newline=""` for csv).

  Yields:
    The open temporary file. If the body raises, the temporary is
    removed and `path` is untouched.

  Raises:
    WriteError: the folder does not exist or cannot be written, or the
      disk filled up (the message names `path`).
  """
  if mode not in ("w", "wb"):
    raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
  tmp = f"{path}.{os.getpid()}{TEMPORARY_SUFFIX}"
  try:
    with open(tmp, mode, **kwargs) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except OSError as e:
    _remove(tmp)
    raise write_error(path, e) from e
  except BaseException:
    _remove(tmp)
    raise


def write_json(path: str, content) -> None:
  """Writes `content` as indented JSON to `path`, atomically (`replace`)."""
  with replace(path) as f:
    json.dump(content, f, indent=1)


def write_text(path: str, text: str) -> None:
  """Writes `text` to `path`, atomically (`replace`)."""
  with replace(path) as f:
    f.write(text)


def save_figure(figure, path: str, **kwargs) -> None:
  """`figure.savefig` into `path`, atomically (format from the extension)."""
  extension = os.path.splitext(path)[1].lstrip(".") or "png"
  with replace(path, "wb") as f:
    figure.savefig(f, format=extension, **kwargs)


def remove_temporaries(directory: str) -> list[str]:
  """Deletes the temporaries that killed writers left in `directory`.

  Only the folder itself is scanned, not sub-folders (Orbax cleans its
  own). Call it when a run or report starts in `directory`, holding its
  lock (`mcl.workdir_lock`) so no live writer's temporary is taken.

  Returns:
    The removed paths.
  """
  if not os.path.isdir(directory):
    return []
  removed = []
  for name in os.listdir(directory):
    if name.endswith(TEMPORARY_SUFFIX):
      path = os.path.join(directory, name)
      _remove(path)
      removed.append(path)
  return removed


def write_error(path: str, error: OSError) -> WriteError:
  """The one-line `WriteError` of a failed write of `path` (also used for
  what Orbax writes)."""
  if error.errno in (errno.ENOSPC, errno.EDQUOT):
    return WriteError(
      f"{path}: no space left on the device; free some and re-run"
    )
  return WriteError(f"{path}: cannot be written ({error.strerror or error})")


def _remove(path: str) -> None:
  with contextlib.suppress(FileNotFoundError):
    os.remove(path)
