"""results.json of a run, rebuilt from its task checkpoints' metadata.

R[i][j] is the score on task j after training task i (T tasks); entries
not reached yet are None. A joint run has one checkpoint, after the last
task, so its matrices have only the last row and no transfer metrics.
"""

from collections.abc import Sequence

import ml_collections
import numpy as np

from mcl.datasets import tasks
from mcl.trainer import metrics


def _mean(values) -> float | None:
  values = [v for v in values if v is not None]
  return float(np.mean(values)) if values else None


def assemble(
  task_list: Sequence[tasks.Task],
  checkpoint_metadata: Sequence[dict],
  capacity: dict,
  config: ml_collections.ConfigDict,
  *,
  joint: bool = False,
) -> dict:
  """results.json from the finished tasks' checkpoint metadata.

  Args:
    task_list: the task sequence.
    checkpoint_metadata: metadata of every finished task checkpoint, in
      task order (keys written by `mcl.experiments.continual`).
    capacity: {"params_per_task", "nonzero_params_per_task",
      "total_params", "total_nonzero_params"} of the last network.
    config: the experiment config.
    joint: the method trained every task at once (one checkpoint, after
      the last task; no sequence of matrix rows).

  Returns:
    The JSON-ready results.
  """
  t = len(task_list)
  by_task = {m["task"]: m for m in checkpoint_metadata}

  def matrix(key):
    rows = []
    for i in range(t):
      row = by_task[i][key] if i in by_task else []
      rows.append(list(row) + [None] * (t - len(row)))
    return rows

  def per_task(key):
    return [by_task[i].get(key) if i in by_task else None for i in range(t)]

  accuracy = matrix("accuracy_row")
  finished = sorted(by_task)
  last = finished[-1] if finished else None
  sequential = bool(finished) and not joint
  n = last + 1 if sequential else 0
  square = [row[:n] for row in accuracy[:n]]
  final_row = accuracy[last][: last + 1] if finished else []
  zero_shot = per_task("zero_shot_accuracy")
  random_init = per_task("random_init_accuracy")
  return {
    "method": config.method,
    "tasks": [list(task.class_names) for task in task_list],
    "finished_tasks": len(finished) if sequential else (t if finished else 0),
    "accuracy_matrix": accuracy,
    "auroc_matrix": matrix("auroc_row"),
    "pr_auc_matrix": matrix("pr_auc_row"),
    "validation_accuracy_matrix": matrix("validation_accuracy_row"),
    "class_incremental_accuracy": per_task("class_incremental_accuracy"),
    "zero_shot_accuracy": zero_shot,
    "random_init_accuracy": random_init,
    "average_accuracy": _mean(final_row),
    "final_auroc": _mean(matrix("auroc_row")[last]) if finished else None,
    "final_pr_auc": _mean(matrix("pr_auc_row")[last]) if finished else None,
    "final_class_incremental_accuracy": (
      by_task[last]["class_incremental_accuracy"] if finished else None
    ),
    "mean_diagonal_accuracy": (
      _mean(square[j][j] for j in range(n)) if sequential else None
    ),
    "bwt": metrics.backward_transfer(square) if sequential else None,
    "fwt": (
      metrics.forward_transfer(zero_shot[:n], random_init[:n])
      if sequential
      else None
    ),
    "forgetting": metrics.forgetting(square) if sequential else None,
    # Tasks whose validation loss after training was not below their
    # untrained network's (`mcl.experiments.continual`).
    "unlearnt_tasks": [
      j for j in finished if by_task[j].get("learnt") is False
    ],
    "validation_loss": per_task("validation_loss"),
    "zero_shot_validation_loss": per_task("zero_shot_validation_loss"),
    **capacity,
    "units_per_layer": per_task("units_per_layer"),
    "seconds_per_task": per_task("seconds"),
    "task_records": per_task("record"),
    "config": config.to_dict(),
  }
