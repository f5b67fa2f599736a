"""results.json of a continual run, from its finished tasks' records.

R[i][j] is the score on task j after training task i (T tasks); entries
not reached yet are None. A joint run has one record, after the last
task, so its matrices have only the last row and no transfer metrics.
`accuracy_matrix` is the run's scenario's (task id given, or in the
class-incremental scenario among all seen classes);
`class_incremental_matrix` is every run's with the task id withheld, with
its BWT and forgetting, and the last task's per-class accuracy and
confusion matrix. `summarise` writes what results.json says after a task
to TensorBoard.
"""

from collections.abc import Sequence

import ml_collections
import numpy as np
from clu import metric_writers

from mcl.datasets import tasks
from mcl.experiments.continual.record import TaskRecord
from mcl.trainer import metrics


def _mean(values) -> float | None:
  values = [v for v in values if v is not None]
  return float(np.mean(values)) if values else None


class _Rows:
  """The records by task: matrices padded with None, per-task lists."""

  def __init__(self, num_tasks: int, records: Sequence[TaskRecord]):
    self.num_tasks = num_tasks
    self.by_task = {r.task: r for r in records}

  def matrix(self, field: str) -> list[list]:
    rows = []
    for i in range(self.num_tasks):
      record = self.by_task.get(i)
      row = list(getattr(record, field) or []) if record else []
      rows.append(row + [None] * (self.num_tasks - len(row)))
    return rows

  def per_task(self, field: str) -> list:
    return [
      getattr(self.by_task[i], field) if i in self.by_task else None
      for i in range(self.num_tasks)
    ]


def _transfer(accuracy, rows: _Rows, sequential: bool) -> dict:
  """Average accuracy, diagonal, BWT, FWT and forgetting of the square
  matrix of the tasks done (Lopez-Paz & Ranzato 2017; Chaudhry 2018)."""
  finished = sorted(rows.by_task)
  last = finished[-1] if finished else None
  n = last + 1 if sequential else 0
  square = [row[:n] for row in accuracy[:n]]
  zero_shot = rows.per_task("zero_shot_accuracy")
  random_init = rows.per_task("random_init_accuracy")
  return {
    "zero_shot_accuracy": zero_shot,
    "random_init_accuracy": random_init,
    "average_accuracy": _mean(accuracy[last][: last + 1]) if finished else None,
    "mean_diagonal_accuracy": (
      _mean(square[j][j] for j in range(n)) if sequential else None
    ),
    "bwt": metrics.backward_transfer(square) if sequential else None,
    # None in the class-incremental scenario (no zero-shot score).
    "fwt": (
      metrics.forward_transfer(zero_shot[:n], random_init[:n])
      if sequential and None not in zero_shot[1:n]
      else None
    ),
    "forgetting": metrics.forgetting(square) if sequential else None,
  }


def _class_incremental(task_list, rows: _Rows, last, sequential) -> dict:
  """The class-incremental matrix, its BWT and forgetting, and the last
  record's per-class accuracy and confusion matrix."""
  matrix = rows.matrix("class_incremental_row")
  n = last.task + 1 if (sequential and last.class_incremental_row) else 0
  square = [row[:n] for row in matrix[:n]]
  classes = [c for task in task_list for c in task.class_names]
  confusion = last.confusion_matrix if last else None
  per_class = None
  if confusion:
    per_class = {
      classes[c]: (row[c] / sum(row) if sum(row) else None)
      for c, row in enumerate(confusion)
    }
  return {
    "class_incremental_matrix": matrix,
    "class_incremental_bwt": metrics.backward_transfer(square) if n else None,
    "class_incremental_forgetting": metrics.forgetting(square) if n else None,
    "classes": classes,
    "per_class_accuracy": per_class,
    "confusion_matrix": confusion,
  }


def assemble(
  task_list: Sequence[tasks.Task],
  records: Sequence[TaskRecord],
  capacity: dict,
  config: ml_collections.ConfigDict,
  *,
  joint: bool = False,
  scenario: str = "task_incremental",
) -> dict:
  """results.json from the finished tasks' records.

  Args:
    task_list: the task sequence.
    records: the record of every finished task, in task order.
    capacity: {"params_per_task", "nonzero_params_per_task",
      "total_params", "total_nonzero_params"} of the last network.
    config: the experiment config.
    joint: the method trained every task at once (one record, after the
      last task; no sequence of matrix rows).
    scenario: the method's (`mcl.continual.method.Method.scenario`).

  Returns:
    The JSON-ready results.
  """
  rows = _Rows(len(task_list), records)
  finished = sorted(rows.by_task)
  last = rows.by_task[finished[-1]] if finished else None
  sequential = bool(finished) and not joint
  accuracy = rows.matrix("accuracy_row")
  transfer = _transfer(accuracy, rows, sequential)
  return {
    "method": config.method,
    "scenario": scenario,
    "tasks": [list(task.class_names) for task in task_list],
    "finished_tasks": (
      len(finished) if sequential else (len(task_list) if finished else 0)
    ),
    "accuracy_matrix": accuracy,
    "auroc_matrix": rows.matrix("auroc_row"),
    "pr_auc_matrix": rows.matrix("pr_auc_row"),
    "validation_accuracy_matrix": rows.matrix("validation_accuracy_row"),
    "class_incremental_accuracy": rows.per_task("class_incremental_accuracy"),
    **_class_incremental(task_list, rows, last, sequential),
    "zero_shot_accuracy": transfer.pop("zero_shot_accuracy"),
    "random_init_accuracy": transfer.pop("random_init_accuracy"),
    "average_accuracy": transfer.pop("average_accuracy"),
    "final_auroc": _mean(rows.matrix("auroc_row")[last.task]) if last else None,
    "final_pr_auc": (
      _mean(rows.matrix("pr_auc_row")[last.task]) if last else None
    ),
    "final_class_incremental_accuracy": (
      last.class_incremental_accuracy if last else None
    ),
    **transfer,
    # Tasks whose validation loss after training was not below their
    # untrained network's (`mcl.experiments.continual.runner`).
    "unlearnt_tasks": [j for j in finished if rows.by_task[j].learnt is False],
    "validation_loss": rows.per_task("validation_loss"),
    "zero_shot_validation_loss": rows.per_task("zero_shot_validation_loss"),
    **capacity,
    "units_per_layer": [
      None if n is None else n.get("units_per_layer")
      for n in rows.per_task("network")
    ],
    "seconds_per_task": rows.per_task("seconds"),
    "task_records": rows.per_task("record"),
    "config": config.to_dict(),
  }


def summarise(
  writer: metric_writers.MetricWriter, out: dict, task: int
) -> None:
  """TensorBoard figures of results.json `out` after `task` (x: task).

  Scalars `continual/test_accuracy/task<j>` (row `task` of the accuracy
  matrix), the average accuracy, BWT, class-incremental accuracy and the
  parameters of each task's network; the matrix so far as a text table.
  """
  row = out["accuracy_matrix"][task]
  scalars = {
    f"continual/test_accuracy/task{j}": v
    for j, v in enumerate(row)
    if v is not None
  }
  scalars.update(
    {
      "continual/average_accuracy": out["average_accuracy"],
      "continual/bwt": out["bwt"],
      "continual/class_incremental_accuracy": (
        out["final_class_incremental_accuracy"]
      ),
      "continual/total_params": out["total_params"],
      "continual/total_nonzero_params": out["total_nonzero_params"],
    }
  )
  for j, n in enumerate(out["params_per_task"][: task + 1]):
    scalars[f"continual/params/task{j}"] = n
  writer.write_scalars(
    task, {k: v for k, v in scalars.items() if v is not None}
  )
  lines = ["| after task | " + " | ".join(map(str, range(len(row)))) + " |"]
  lines.append("|---" * (len(row) + 1) + "|")
  for i, r in enumerate(out["accuracy_matrix"][: task + 1]):
    cells = ["" if v is None else f"{v:.3f}" for v in r]
    lines.append(f"| {i} | " + " | ".join(cells) + " |")
  writer.write_texts(task, {"continual/accuracy_matrix": "\n".join(lines)})


# What two runs of one config may differ in besides their figures.
NOT_FIGURES = frozenset({"seconds_per_task", "seconds", "provenance", "config"})


def largest_difference(a, b, path: str = "results") -> float:
  """The largest |difference| between the numbers of two results.json
  trees (a replica's against its lone run's), `NOT_FIGURES` left out.

  Raises:
    ValueError: the trees differ in anything but numbers (a key, a
      length, a string, a None), named by its path.
  """
  if isinstance(a, dict) and isinstance(b, dict):
    if a.keys() != b.keys():
      raise ValueError(f"{path}: keys {sorted(a)} against {sorted(b)}")
    pairs = [(a[k], b[k], f"{path}.{k}") for k in a if k not in NOT_FIGURES]
  elif isinstance(a, list) and isinstance(b, list):
    if len(a) != len(b):
      raise ValueError(f"{path}: {len(a)} entries against {len(b)}")
    pairs = [
      (x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b, strict=True))
    ]
  elif _number(a) and _number(b):
    return abs(a - b)
  elif a == b:
    return 0.0
  else:
    raise ValueError(f"{path}: {a!r} against {b!r}")
  return max((largest_difference(*p) for p in pairs), default=0.0)


def _number(x) -> bool:
  return isinstance(x, int | float) and not isinstance(x, bool)
