"""Orbax checkpoints of a growing network, one per finished task.

Each checkpoint holds the parameter tree, JSON metadata (widths, unit
timestamps, task index, per-task records) and, when given, the method's
state (numpy arrays: timestamps, EWC anchors and Fishers, replay memory).
The metadata is read first and the restore target rebuilt from it with
`jax.eval_shape`, so a checkpoint restores into the grown shapes it was
saved with.
"""

import dataclasses
import os
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

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
    self._manager = ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(max_to_keep=None, create=True),
      item_names=("params", "metadata", "state"),
    )

  def save(
    self, task: int, params: Params, metadata: dict, state: dict | None = None
  ) -> None:
    """Writes task `task`'s checkpoint and waits until it is on disk."""
    items = {
      "params": ocp.args.StandardSave(params),
      "metadata": ocp.args.JsonSave(metadata),
    }
    if state is not None:
      items["state"] = ocp.args.StandardSave(state)
    self._manager.save(task, args=ocp.args.Composite(**items), force=True)
    self._manager.wait_until_finished()

  def state(self, task: int) -> dict:
    """The method state saved with task `task` (numpy arrays)."""
    restored = self._manager.restore(
      task, args=ocp.args.Composite(state=ocp.args.StandardRestore())
    )
    return jax.tree.map(np.asarray, restored["state"])

  def tasks(self) -> list[int]:
    """Tasks with a finished checkpoint, ascending."""
    return sorted(self._manager.all_steps())

  def metadata(self, task: int) -> dict:
    """The JSON metadata of task `task`'s checkpoint."""
    restored = self._manager.restore(
      task, args=ocp.args.Composite(metadata=ocp.args.JsonRestore())
    )
    return restored["metadata"]

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
    """
    metadata = self.metadata(task)
    restored = self._manager.restore(
      task,
      args=ocp.args.Composite(
        params=ocp.args.StandardRestore(abstract_params(metadata))
      ),
    )
    params = jax.tree.map(np.asarray, restored["params"])
    return params, metadata

  def close(self) -> None:
    self._manager.close()
