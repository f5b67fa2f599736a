"""Orbax checkpoints: one per finished task, and a resumable fit's.

Task checkpoints (`TaskCheckpoints`, the continual runner): each holds the
parameter tree, JSON metadata (widths, unit timestamps, task index,
per-task records) and, when given, the method's state (numpy arrays:
timestamps, EWC anchors and Fishers, replay memory). The metadata is read
first and the restore target rebuilt from it with `jax.eval_shape`, so a
checkpoint restores into the grown shapes it was saved with.

A resumable fit (`RunCheckpoints`, `mcl.trainer.fit`) keeps three folders in its
workdir, each an `ocp.CheckpointManager` with a pytree item
(`StandardSave`) and a JSON metadata item (`JsonSave`):

- `latest/`: everything needed to resume, written after every validation
  pass (step = passes done): the training state (params, batch_stats,
  opt_state, step) and the best variables so far, in one atomic save, and
  the metadata (stage, drop counter, best loss, history, recipe).
- `best/`: a copy of the best variables by validation loss, written on
  every improvement (step = passes done), for use without the trainer.
- `nonfinite/`: the training state at the pass whose loss was NaN or
  infinite (step = optimizer steps).

The restore target is a tree of arrays or `jax.ShapeDtypeStruct` with the
saved structure (e.g. the model's variables and a fresh `optimizer.init`).

Every checkpoint is written synchronously and sealed once Orbax has
finished it (`mcl.trainer.checkpoint_steps`): a full disk fails in the
save. Opening one checks the seal first, so a flipped byte, a truncated or
deleted file, or a checkpoint whose writer was killed before the seal is a
`CheckpointError` (`mcl.trainer.checkpoint_seals`) naming the folder and
the problem, never a library traceback or silently wrong weights.
`TaskCheckpoints.resumable` moves damaged task checkpoints aside (to
`<directory>.damaged/`) and says from which task a run resumes;
`RunCheckpoints` moves a damaged `latest/` aside and the fit starts over.
"""

import dataclasses
import os
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from mcl.trainer import checkpoint_seals as seals
from mcl.trainer import checkpoint_steps as steps

Params = dict


def architecture(model: nn.Module) -> dict:
  """The module's fields as JSON-ready values (checkpoint metadata).

  Sequences (widths) become lists; scalars (e.g. `lateral`) stay as they are.
  """

  def jsonable(value):
    return list(value) if isinstance(value, (tuple, list)) else value

  return {
    f.name: jsonable(getattr(model, f.name))
    for f in dataclasses.fields(model)
    if f.name not in ("parent", "name")
  }


def abstract_params(
  model_class: type[nn.Module], input_shape: tuple[int, ...]
) -> Callable[[dict], Params]:
  """Maps checkpoint metadata to the abstract tree of its grown model.

  Args:
    model_class: the model's class; `metadata["architecture"]` holds its
      constructor arguments, as written by `architecture`.
    input_shape: shape of one float32 input batch, e.g. (1, frames, mels).

  Returns:
    metadata -> tree of `jax.ShapeDtypeStruct`, via `jax.eval_shape` of the
    model's init (nothing is allocated).
  """

  def build(metadata: dict) -> Params:
    model = model_class(**metadata["architecture"])
    shapes = jax.eval_shape(
      model.init,
      jax.random.key(0),
      jax.ShapeDtypeStruct(input_shape, jnp.float32),
    )
    return shapes["params"]

  return build


def timestamps(metadata: dict) -> dict[str, np.ndarray]:
  """The units' timestamps of checkpoint metadata: {layer: int32 [units]}."""
  return {k: np.asarray(v, np.int32) for k, v in metadata["timestamps"].items()}


class TaskCheckpoints:
  """Checkpoints under `<directory>/<task>`, kept for every task."""

  def __init__(self, directory: str):
    self.directory = os.path.abspath(directory)
    self._manager = steps.manager(
      self.directory, ("params", "metadata", "state"), max_to_keep=None
    )
    self._verified = set()  # Steps whose seal this process has checked.

  def folder(self, task: int) -> str:
    """The folder of task `task`'s checkpoint."""
    return os.path.join(self.directory, str(task))

  def _check(self, task: int) -> None:
    """Checks task `task`'s seal, once per process."""
    if task not in self._verified:
      seals.verify(self.folder(task))
      self._verified.add(task)

  def save(
    self, task: int, params: Params, metadata: dict, state: dict | None = None
  ) -> None:
    """Writes task `task`'s checkpoint, waits until it is on disk and
    seals it. Synchronous: a full disk must fail here, in the save, before
    TensorBoard's writer meets it.

    Raises:
      OSError, seals.CheckpointError: it could not be written.
    """
    items = {
      "params": ocp.args.StandardSave(params),
      "metadata": ocp.args.JsonSave(metadata),
    }
    if state is not None:
      items["state"] = ocp.args.StandardSave(state)
    steps.write(self._manager, task, items)
    self._verified.add(task)

  def state(self, task: int) -> dict:
    """The method state saved with task `task` (numpy arrays).

    Raises:
      seals.CheckpointError: the checkpoint is damaged or has no state item.
    """
    state = self._item(task, "state", ocp.args.StandardRestore())
    return jax.tree.map(np.asarray, state)

  def _item(self, task: int, name: str, args):
    """Item `name` of task `task`'s checkpoint, read after its seal."""
    self._check(task)
    return steps.read(self._manager, task, name, {name: args})[name]

  def tasks(self) -> list[int]:
    """Tasks with a finished checkpoint, ascending."""
    return sorted(self._manager.all_steps())

  def metadata(self, task: int) -> dict:
    """The JSON metadata of task `task`'s checkpoint.

    Raises:
      seals.CheckpointError: the checkpoint is damaged or its metadata
        unreadable.
    """
    metadata = self._item(task, "metadata", ocp.args.JsonRestore())
    if not isinstance(metadata, dict):
      raise seals.CheckpointError(
        f"{self.folder(task)}: metadata is not a JSON object"
      )
    return metadata

  def restore(
    self, task: int, abstract_params: Callable[[dict], Params]
  ) -> tuple[Params, dict]:
    """Parameters and metadata of task `task`'s checkpoint.

    Args:
      task: the checkpoint to read.
      abstract_params: maps the metadata to a tree of
        `jax.ShapeDtypeStruct` (e.g. `jax.eval_shape` of the model's init
        at the saved widths).

    Returns:
      (params as numpy arrays, metadata).

    Raises:
      seals.CheckpointError: the checkpoint is damaged, or its parameters
        do not have the shapes of the architecture its metadata records.
    """
    metadata = self.metadata(task)
    folder = self.folder(task)
    target = seals.read(
      folder, "architecture in metadata", lambda: abstract_params(metadata)
    )
    params = jax.tree.map(
      np.asarray, self._item(task, "params", ocp.args.StandardRestore(target))
    )
    if seals.shapes(params) != seals.shapes(target):
      raise seals.CheckpointError(
        f"{folder}: params do not have the shapes of the recorded architecture"
      )
    return params, metadata

  def resumable(
    self, abstract_params: Callable[[dict], Params], with_state: bool
  ) -> int | None:
    """The last task a run can resume after; damaged checkpoints moved aside.

    Every checkpoint is opened in task order (seal, metadata, parameters,
    and the state when `with_state`); from the first that cannot be read
    on, checkpoints are moved to `<directory>.damaged/`, each with a
    warning naming it and the problem.

    Returns:
      The last task of the unbroken run of readable checkpoints from task
      0, or None when there is none.
    """
    done = self.tasks()
    last = None
    for i, task in enumerate(done):
      try:
        if task != i:
          raise seals.CheckpointError(
            f"{self.folder(i)}: checkpoint is missing"
          )
        self.restore(task, abstract_params)
        if with_state:
          self.state(task)
      except seals.CheckpointError as e:
        for later in done[i:]:
          moved = seals.move_aside(self.folder(later))
          self._verified.discard(later)
          logging.warning(
            "Checkpoint of task %d cannot be used (%s); moved to %s",
            later,
            e if later == task else "after a damaged one",
            moved,
          )
        self._manager.reload()
        break
      last = task
    return last

  def close(self) -> None:
    """Closes the manager."""
    self._manager.close()


class RunCheckpoints:
  """The `latest/` and `best/` checkpoints of a run under `workdir`."""

  def __init__(self, workdir: str):
    self._latest = steps.manager(
      os.path.join(workdir, "latest"), steps.TREE_ITEMS, max_to_keep=1
    )
    self._best = steps.manager(
      os.path.join(workdir, "best"), steps.TREE_ITEMS, max_to_keep=1
    )

  def latest_passes(self) -> int | None:
    """Validation passes done at the latest save, or None before any."""
    return self._latest.latest_step()

  def latest_metadata(self) -> dict:
    """The JSON metadata of the latest save.

    Raises:
      FileNotFoundError: nothing has been saved yet.
    """
    passes = self._require_latest()
    return steps.restore_tree(self._latest, passes, None, "metadata")[1]

  def discard_damaged_latest(self) -> str | None:
    """Moves a `latest/` save that cannot be read aside (and `best/`, the
    same fit's), with a warning.

    Returns:
      Where it was moved (a fit then starts over), or None when the save
      is readable or there is none.
    """
    passes = self._latest.latest_step()
    if passes is None:
      return None
    try:
      steps.restore_tree(self._latest, passes, None, "metadata")
    except seals.CheckpointError as e:
      moved = seals.move_aside(steps.folder(self._latest, passes))
      self._latest.reload()
      best = self._best.latest_step()  # Progress of the discarded fit.
      if best is not None:
        seals.move_aside(steps.folder(self._best, best))
        self._best.reload()
      logging.warning("%s; moved to %s, the fit starts over", e, moved)
      return moved
    return None

  def save_latest(self, passes: int, tree: steps.Tree, metadata: dict) -> None:
    """Replaces the latest save and waits until it is on disk.

    Args:
      passes: validation passes done (the checkpoint's step).
      tree: {"state": {"step", "params", "batch_stats", "opt_state"},
        "best": {"params", "batch_stats"}}.
      metadata: JSON-ready progress of the run.
    """
    steps.save_tree(self._latest, passes, tree, metadata)

  def restore_latest(self, target: steps.Tree) -> tuple[steps.Tree, dict]:
    """The latest (tree as numpy arrays, metadata), shaped like `target`.

    Raises:
      FileNotFoundError: nothing has been saved yet.
      seals.CheckpointError: the save is damaged or has other shapes.
    """
    return steps.restore_tree(self._latest, self._require_latest(), target)

  def save_best(
    self, passes: int, variables: steps.Tree, metadata: dict
  ) -> None:
    """Replaces the best variables ({"params", "batch_stats"})."""
    steps.save_tree(self._best, passes, variables, metadata)

  def restore_best(self, target: steps.Tree) -> tuple[steps.Tree, dict]:
    """The best (variables as numpy arrays, metadata).

    Raises:
      FileNotFoundError: no pass has improved yet.
      seals.CheckpointError: the save is damaged or has other shapes.
    """
    passes = self._best.latest_step()
    if passes is None:
      raise FileNotFoundError(
        f"no best checkpoint under {self._best.directory}"
      )
    return steps.restore_tree(self._best, passes, target)

  def _require_latest(self) -> int:
    passes = self._latest.latest_step()
    if passes is None:
      raise FileNotFoundError(f"no checkpoint under {self._latest.directory}")
    return passes

  def close(self) -> None:
    self._latest.close()
    self._best.close()


def save_nonfinite(
  workdir: str, step: int, tree: steps.Tree, metadata: dict
) -> str:
  """Saves the state at a non-finite loss under `<workdir>/nonfinite`.

  Args:
    workdir: the run's folder.
    step: optimizer steps done (the checkpoint's step).
    tree: {"state": {"step", "params", "batch_stats", "opt_state"}}.
    metadata: JSON-ready context (pass, stage).

  Returns:
    The checkpoint folder. A re-run that diverges at the same step again
    (runs are deterministic) keeps the first save.
  """
  directory = os.path.join(workdir, "nonfinite")
  manager = steps.manager(directory, steps.TREE_ITEMS, max_to_keep=None)
  try:
    if step not in manager.all_steps():
      steps.save_tree(manager, step, tree, metadata)
  finally:
    manager.close()
  return os.path.abspath(directory)


def restore_nonfinite(
  workdir: str, target: steps.Tree
) -> tuple[steps.Tree, dict]:
  """The latest state saved by `save_nonfinite` and its metadata.

  Raises:
    FileNotFoundError: there is none.
  """
  manager = steps.manager(
    os.path.join(workdir, "nonfinite"), steps.TREE_ITEMS, max_to_keep=None
  )
  try:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f"no checkpoint under {manager.directory}")
    return steps.restore_tree(manager, step, target)
  finally:
    manager.close()
