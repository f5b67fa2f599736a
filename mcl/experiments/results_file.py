"""`<workdir>/results.json`, as every experiment writes it.

One writer for the continual, tagging and feature experiments: the file
is replaced atomically (`mcl.runtime.atomic_files`: a killed run leaves
the previous file or none, never half of one) and only by process 0, as
every process holds the same figures.
"""

import os

import jax

from mcl.runtime import atomic_files

NAME = "results.json"


def write_results(workdir: str, results: dict) -> str:
  """Writes `results` (JSON-ready) to `<workdir>/results.json`.

  Returns:
    The file's path (written by process 0 only).

  Raises:
    mcl.runtime.errors.UserError: the write failed (e.g. a full disk),
      naming the path.
  """
  path = os.path.join(workdir, NAME)
  if jax.process_index() == 0:
    atomic_files.write_json(path, results)
  return path
