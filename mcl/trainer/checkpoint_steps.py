"""One Orbax checkpoint step: written whole and sealed, read after its seal.

A step is the folder `<directory>/<step>` of an `ocp.CheckpointManager`
holding named items (an `ocp.args.Composite`). `write` saves one
synchronously, waits until it is on disk and seals it (`checksums.json`,
`mcl.trainer.checkpoint_seals`): a full or unwritable disk fails there, in
the save, as one line naming the folder. `read` restores items after the
caller has checked the seal, a library failure becoming a
`seals.CheckpointError`.

A fit's checkpoints (`mcl.trainer.checkpointing.RunCheckpoints`, the
non-finite state) are each a pair of items, a pytree `tree`
(`StandardSave`) and JSON `metadata` (`JsonSave`): `save_tree` and
`restore_tree`.

Orbax's save machinery is process-global (operation ids, signalling
threads): two saves from two threads at once, as the runs of a replica
group make (`mcl.experiments.continual.replica_group`), remove each
other's temporary folders. Writes and reads hold one process-wide lock.
"""

import os
import threading
from collections.abc import Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp

from mcl.trainer import checkpoint_seals as seals

Tree = dict
# The items of a fit's checkpoint.
TREE_ITEMS = ("tree", "metadata")
# Held by every write and read (module docstring).
_ORBAX = threading.RLock()


def manager(
  directory: str, item_names: Sequence[str], max_to_keep: int | None
) -> ocp.CheckpointManager:
  """An Orbax manager of steps under `directory` (created if missing).

  Args:
    directory: the folder; made absolute.
    item_names: the items of every step.
    max_to_keep: steps kept (older ones deleted), None for all.
  """
  return ocp.CheckpointManager(
    os.path.abspath(directory),
    options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
    item_names=tuple(item_names),
  )


def folder(manager: ocp.CheckpointManager, step: int) -> str:
  """The folder of step `step`."""
  return os.path.join(str(manager.directory), str(step))


def write(
  manager: ocp.CheckpointManager, step: int, items: dict[str, object]
) -> None:
  """Saves `items` as step `step` (replacing it), waits until it is on
  disk and seals it.

  Args:
    manager: the step's manager.
    step: the step number.
    items: {item name: `ocp.args` save argument}.

  Raises:
    OSError, seals.CheckpointError: it could not be written; a full or
      unwritable disk as one line naming the folder (`seals.write_error`).
  """
  with _ORBAX:
    try:
      manager.save(step, args=ocp.args.Composite(**items), force=True)
      manager.wait_until_finished()
    except (OSError, ValueError) as e:
      error = seals.write_error(folder(manager, step), e)
      if error is e:
        raise
      raise error from e
  seals.seal(folder(manager, step))


def read(
  manager: ocp.CheckpointManager, step: int, what: str, items: dict
) -> dict:
  """Restores `items` ({item name: `ocp.args` restore argument}) of step
  `step`, whose seal the caller has checked.

  Raises:
    seals.CheckpointError: the library cannot read them (`what` names
      them in the message).
  """
  with _ORBAX:
    return seals.read(
      folder(manager, step),
      what,
      lambda: manager.restore(step, args=ocp.args.Composite(**items)),
    )


def save_tree(
  manager: ocp.CheckpointManager, step: int, tree: Tree, metadata: dict
) -> None:
  """`write`s a fit's checkpoint: `tree` (arrays) and JSON `metadata`."""
  write(
    manager,
    step,
    {
      "tree": ocp.args.StandardSave(tree),
      "metadata": ocp.args.JsonSave(metadata),
    },
  )


def restore_tree(
  manager: ocp.CheckpointManager, step: int, target: Tree, item: str = ""
) -> tuple[Tree, dict]:
  """A fit's checkpoint, its seal checked first.

  Args:
    manager: the checkpoint's manager.
    step: its step.
    target: a tree of arrays or `jax.ShapeDtypeStruct` with the saved
      structure; unused when `item` is "metadata".
    item: "metadata" to read only the metadata; "" for both.

  Returns:
    (tree as numpy arrays, or {} for "metadata"; metadata).

  Raises:
    seals.CheckpointError: the checkpoint is damaged or its arrays do not
      have the shapes of `target`.
  """
  seals.verify(folder(manager, step))
  items = {"metadata": ocp.args.JsonRestore()}
  if item != "metadata":
    items["tree"] = ocp.args.StandardRestore(target)
  restored = read(manager, step, item or "checkpoint", items)
  if item == "metadata":
    return {}, restored["metadata"]
  tree = jax.tree.map(np.asarray, restored["tree"])
  if seals.shapes(tree) != seals.shapes(target):
    raise seals.CheckpointError(
      f"{folder(manager, step)}: arrays do not have the expected shapes"
    )
  return tree, restored["metadata"]
