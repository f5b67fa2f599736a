"""Sealed checkpoints: a checksum per file, checked before anything reads.

Once Orbax has finished a save, `seal` writes `checksums.json` into the
checkpoint's folder: the SHA-256 of every file in it. `verify` checks a
folder against its seal, so a flipped byte, a truncated or deleted file,
or a checkpoint whose writer was killed before the seal is a
`CheckpointError` naming the folder and the problem. `read` turns any
library error of a restore (Orbax, TensorStore, JSON) into the same kind
of one line, `write_error` a full disk during a save, and `move_aside`
puts a damaged folder where nothing reads it but nothing is lost.
"""

import errno
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils

from mcl.runtime import atomic_files, errors

CHECKSUMS = "checksums.json"


class CheckpointError(errors.UserError):
  """A checkpoint that cannot be read; the message names its folder and
  what is wrong (unsealed, a file missing or changed, bad metadata, a shape
  that does not match the recorded architecture)."""


def _file_digests(folder: str) -> dict[str, str]:
  digests = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      relative = os.path.relpath(path, folder)
      if relative == CHECKSUMS:
        continue
      sha = hashlib.sha256()
      with open(path, "rb") as f:
        for block in iter(lambda f=f: f.read(1 << 20), b""):
          sha.update(block)
      digests[relative] = sha.hexdigest()
  return dict(sorted(digests.items()))


def seal(folder: str) -> None:
  """Writes `<folder>/checksums.json`: the SHA-256 of every file in the
  finished checkpoint `folder` (atomically; call once Orbax is done).

  With several processes, process 0 writes it (the others' files are on
  disk once Orbax's save returns) and every process waits for it, so none
  reads a checkpoint before it is sealed.
  """
  if jax.process_index() == 0:
    atomic_files.write_json(
      os.path.join(folder, CHECKSUMS), _file_digests(folder)
    )
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"mcl seal {folder}")


def verify(folder: str) -> None:
  """Checks a checkpoint folder against its seal.

  Raises:
    CheckpointError: the folder or its seal is missing or unreadable, or a
      sealed file is missing or has other contents.
  """
  path = os.path.join(folder, CHECKSUMS)
  if not os.path.isdir(folder):
    raise CheckpointError(f"{folder}: checkpoint folder does not exist")
  try:
    with open(path) as f:
      sealed = json.load(f)
  except FileNotFoundError:
    raise CheckpointError(
      f"{folder}: not sealed (no {CHECKSUMS}): its writer was killed "
      "before it finished, or it was damaged"
    ) from None
  except (OSError, ValueError) as e:
    raise CheckpointError(f"{path}: unreadable seal ({e})") from e
  found = _file_digests(folder)
  missing = sorted(set(sealed) - set(found))
  if missing:
    raise CheckpointError(f"{folder}: file {missing[0]} is missing")
  changed = [name for name, digest in sealed.items() if found[name] != digest]
  if changed:
    raise CheckpointError(
      f"{folder}: file {changed[0]} does not match its checksum (damaged)"
    )


def write_error(folder: str, error: Exception) -> Exception:
  """A failed Orbax save as one line naming `folder` when the disk is
  full or unwritable: Python's writes raise OSError, TensorStore's a
  ValueError whose text carries the OS error. Anything else is a bug and
  is returned as it is (re-raised with its traceback)."""
  if isinstance(error, OSError):
    return atomic_files.write_error(folder, error)
  text = str(error)
  if "No space left on device" in text or "os_error_code='28'" in text:
    return atomic_files.write_error(
      folder, OSError(errno.ENOSPC, "No space left on device")
    )
  return error


def shapes(tree) -> list[tuple[int, ...]]:
  """Leaf shapes of arrays or `jax.ShapeDtypeStruct`s, in tree order."""
  return [
    tuple(getattr(x, "shape", np.shape(x))) for x in jax.tree.leaves(tree)
  ]


def move_aside(folder: str) -> str:
  """Moves a damaged checkpoint folder to `<parent>.damaged/<name>.<time>`."""
  parent, name = os.path.split(os.path.normpath(folder))
  target_dir = parent + ".damaged"
  os.makedirs(target_dir, exist_ok=True)
  stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
  target = os.path.join(target_dir, f"{name}.{stamp}")
  shutil.move(folder, target)
  return target


def read(folder: str, what: str, read: Callable):
  """`read()`, with any library error turned into a `CheckpointError`."""
  try:
    return read()
  except CheckpointError:
    raise
  except Exception as e:  # Orbax, TensorStore and JSON all raise their own.
    problem = str(e).strip().splitlines()[0][:300] if str(e) else type(e)
    raise CheckpointError(f"{folder}: {what} unreadable ({problem})") from e
