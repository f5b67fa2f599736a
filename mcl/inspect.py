"""Parameter-tree report of a run's checkpoints, between tasks.

  python -m mcl.inspect --workdir=DIR [--task=N] [--diff=M]

For task N (default: the last) of a run with unit timestamps (DEN and
the sequential baselines) prints, per hidden layer, the live units, the
slots (capacity, `mcl.continual.slots`) that hold them, the units by
timestamp, the share of exact zeros in the kernel, the units split at each
task with their semantic drift, and the parameters each task's timestamped
network uses. `--diff=M` compares the trees after tasks M and N: units
added, and how many of the units they share changed, and by how much.
For column methods (STL, progressive) it lists every parameter group's
size and zeros, and `--diff` the largest change of each shared group.
"""

import collections
import os

import numpy as np
from absl import app, flags

from mcl import models
from mcl.continual import surgery, timestamped
from mcl.runtime import errors, logs
from mcl.trainer import checkpointing


def load(workdir: str, task: int | None = None) -> tuple[dict, dict]:
  """(params, metadata) of one of a run's task checkpoints.

  Args:
    workdir: the run's folder (with `checkpoints/`).
    task: the task whose checkpoint to read; None for the last.

  Raises:
    mcl.runtime.errors.UserError: no checkpoint, or none for `task`.
  """
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    raise errors.UserError(f"{workdir}: not a continual run (no checkpoints/)")
  checkpoints = checkpointing.TaskCheckpoints(directory)
  finished = checkpoints.tasks()
  if not finished:
    raise errors.UserError(f"{workdir}: no task has finished yet")
  task = finished[-1] if task is None else task
  if task not in finished:
    raise errors.UserError(
      f"{workdir}: no checkpoint of task {task}; finished tasks: {finished}"
    )
  metadata = checkpoints.metadata(task)
  abstract = checkpointing.abstract_params(
    models.get_model_class(metadata["model"]), tuple(metadata["input_shape"])
  )
  params, metadata = checkpoints.restore(task, abstract)
  checkpoints.close()
  return params, metadata


def layer_report(params: dict, timestamps: dict) -> list[dict]:
  """Per hidden layer: units by timestamp and the share of exact zeros.

  Args:
    params: a tree of the chain layout of `mcl.continual.surgery`.
    timestamps: {layer: int [units]}.

  Returns:
    [{"layer", "units", "units_by_timestamp": {t: n}, "zero_share"}].
  """
  rows = []
  for name, stamps in timestamps.items():
    kernel = params[name]["kernel"]
    counts = collections.Counter(int(t) for t in stamps)
    rows.append(
      {
        "layer": name,
        "units": int(stamps.size),
        "units_by_timestamp": dict(sorted(counts.items())),
        "zero_share": float(np.mean(kernel == 0)),
      }
    )
  return rows


def diff_report(before: dict, after: dict, layers) -> list[dict]:
  """How the hidden layers changed from one task's tree to a later one's.

  Returns:
    [{"layer", "units_added", "shared_units_changed", "max_drift",
    "zeros_kept"}], the drift being `surgery.semantic_drift` of the units
    both trees have, "zeros_kept" the share of the earlier tree's exact
    kernel zeros still exactly zero (None without zeros): selective
    retraining should keep them (issue 21).
  """
  drift = surgery.semantic_drift(after, before, layers)

  def zeros_kept(name):
    old = before[name]["kernel"]
    n_in, n_out = old.shape[-2:]
    was = old == 0
    now = after[name]["kernel"][..., :n_in, :n_out] == 0
    return float(np.sum(was & now) / np.sum(was)) if was.any() else None

  return [
    {
      "layer": name,
      "units_added": int(
        after[name]["bias"].shape[0] - before[name]["bias"].shape[0]
      ),
      "shared_units_changed": int(np.sum(drift[name] > 0)),
      "max_drift": float(drift[name].max(initial=0.0)),
      "zeros_kept": zeros_kept(name),
    }
    for name in layers
  ]


def group_report(params: dict) -> list[str]:
  """Per parameter group: scalars and the share of exact zeros.

  The report of trees without unit timestamps (STL, progressive nets).
  """
  lines = []
  for name, group in params.items():
    size = sum(np.size(v) for v in group.values())
    zeros = sum(np.sum(v == 0) for v in group.values())
    lines.append(f"  {name:>20}: {size:7d} scalars, {zeros / size:.1%} zeros")
  return lines


def format_report(params: dict, metadata: dict) -> str:
  """The text report of one checkpoint."""
  if "timestamps" not in metadata:
    return "\n".join([f"after task {metadata['task']}", *group_report(params)])
  timestamps = checkpointing.timestamps(metadata)
  heads = models.get_model_class(metadata["model"]).from_params(params).heads
  lines = [f"after task {metadata['task']}"]
  slots = metadata.get("slots_per_layer") or {}
  for row in layer_report(params, timestamps):
    held = slots.get(row["layer"])
    capacity = f" of {held} slots" if held else ""
    lines.append(
      f"  {row['layer']:>8}: {row['units']:4d} units{capacity}, by timestamp "
      f"{row['units_by_timestamp']}, {row['zero_share']:.1%} exact zeros"
    )
  record = metadata.get("record", {})
  for key, label in (
    ("selected_units", "selective retraining |S|"),
    ("added_units", "added by expansion"),
    ("pruned_units", "pruned after expansion"),
  ):
    if key in record:
      lines.append(f"  {label}: {record[key]}")
  for name, phase in record.get("phases", {}).items():
    lines.append(
      f"  phase {name}: {phase['steps']} steps, validation loss "
      f"{phase.get('validation_loss_before', float('nan')):.4f} -> "
      f"{phase['validation_loss']:.4f}"
    )
  if metadata.get("learnt") is False:
    lines.append(
      f"  NOT LEARNT: validation loss {metadata['validation_loss']:.4f}, "
      f"untrained {metadata['zero_shot_validation_loss']:.4f}"
    )
  for split in record.get("splits", []):
    drifts = ", ".join(
      f"{u}->{d} ({r:.3f})"
      for u, d, r in zip(
        split["units"], split["duplicates"], split["drifts"], strict=True
      )
    )
    lines.append(f"  split {split['layer']}: {drifts}")
  counts = timestamped.parameters_per_task(params, timestamps, heads)
  lines.append(f"  parameters per task: {counts}")
  return "\n".join(lines)


def format_diff(before: dict, after: dict, layers) -> str:
  """The text report of `diff_report`."""
  return "\n".join(
    f"  {row['layer']:>8}: +{row['units_added']} units, "
    f"{row['shared_units_changed']} shared units changed, "
    f"max drift {row['max_drift']:.4f}, "
    + (
      "no zeros before"
      if row["zeros_kept"] is None
      else f"{row['zeros_kept']:.1%} of its zeros still zero"
    )
    for row in diff_report(before, after, layers)
  )


@errors.usage_errors
def main(argv):
  del argv
  logs.configure()
  params, metadata = load(_WORKDIR.value, _TASK.value)
  print(format_report(params, metadata))
  if _DIFF.value is not None:
    before, _ = load(_WORKDIR.value, _DIFF.value)
    print(f"diff task {_DIFF.value} -> task {metadata['task']}")
    if "timestamps" in metadata:
      print(format_diff(before, params, list(metadata["timestamps"])))
    else:
      for name in sorted(set(before) & set(params)):
        change = max(
          float(np.max(np.abs(params[name][k] - v), initial=0.0))
          for k, v in before[name].items()
        )
        print(f"  {name:>20}: max |change| {change:.4g}")


def cli() -> None:
  """Console script `mcl-inspect`: defines the flags, runs `main`."""
  global _WORKDIR, _TASK, _DIFF
  _WORKDIR = flags.DEFINE_string("workdir", None, "Run folder.", required=True)
  _TASK = flags.DEFINE_integer("task", None, "Task to report; default last.")
  _DIFF = flags.DEFINE_integer("diff", None, "Earlier task to compare with.")
  app.run(main)


if __name__ == "__main__":
  cli()
