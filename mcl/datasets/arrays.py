"""Task data from arrays a user already has (a notebook's own features).

`from_arrays` turns features or log-mels with integer labels, a task
sequence of label groups and a split id per example into a `TaskData`
the continual experiment runs on (`mcl.experiments.run(config, workdir,
data=...)`): every method, scored task-incrementally (a head per task)
and class-incrementally (`class_incremental_accuracy`, no task id). Each
example is one chunk: log-mels [N, T, F] are T x F images, features
[N, D] are 1 x D images (give them a model without conv layers,
`model.widths.conv_widths = ()`). Training streams are endless seeded
draws of a task's training examples; evaluation batches are fixed-shape,
padded with mask-0 rows.
"""

import hashlib
from collections.abc import Sequence

import numpy as np

from mcl.datasets import tasks
from mcl.runtime import errors

SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}


def _check(inputs, labels, split) -> None:
  if inputs.ndim not in (2, 3):
    raise errors.UserError(
      f"inputs must be [N, T, F] or [N, D], got shape {inputs.shape}"
    )
  if labels.shape != (inputs.shape[0],) or split.shape != labels.shape:
    raise errors.UserError(
      f"labels {labels.shape} and split {split.shape} must be "
      f"[N] = [{inputs.shape[0]}] like inputs {inputs.shape}"
    )
  if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
    raise errors.UserError("labels must be integers >= 0")
  if not np.isfinite(inputs).all():
    raise errors.UserError("inputs hold NaN or infinite values")


def _split_ids(split: np.ndarray) -> np.ndarray:
  if split.dtype.kind in "US":
    unknown = sorted(set(split.tolist()) - set(SPLIT_IDS))
    if unknown:
      raise errors.UserError(
        f"unknown split names {unknown}; known: {list(SPLIT_IDS)}"
      )
    return np.asarray([SPLIT_IDS[s] for s in split.tolist()], np.int64)
  if not set(np.unique(split).tolist()) <= {0, 1, 2}:
    raise errors.UserError("split ids must be 0 (train), 1 (validation), 2")
  return split.astype(np.int64)


class ArrayTaskData:
  """`mcl.datasets.task_data.TaskData` of in-memory examples.

  Attributes:
    tasks: the task sequence (class ids are label values).
    input_shape: (1, T, F) or (1, 1, D).
    records: "arrays/<sha1 of the arrays>", so a resumed run is refused
      on other arrays.
  """

  def __init__(self, inputs, labels, split, task_list, batch_size, eval_size):
    self._inputs = inputs
    self._labels = labels
    self._split = split
    self.tasks = list(task_list)
    self.input_shape = (1, *inputs.shape[1:])
    self._batch_size = batch_size
    self._eval_size = eval_size
    digest = hashlib.sha1()
    for a in (inputs, labels, split):
      digest.update(np.ascontiguousarray(a).tobytes())
    self.records = f"arrays/{digest.hexdigest()[:16]}"

  def _rows(self, task: int, split: str) -> np.ndarray:
    ids = np.asarray(self.tasks[task].class_ids)
    chosen = (self._split == SPLIT_IDS[split]) & np.isin(self._labels, ids)
    return np.flatnonzero(chosen)

  def _local(self, task: int, labels: np.ndarray) -> np.ndarray:
    ids = list(self.tasks[task].class_ids)
    return np.asarray([ids.index(v) for v in labels], np.int32)

  def train_batches(self, task, seed):
    rows = self._rows(task, "train")
    rng = np.random.default_rng(seed)
    while True:
      pick = rows[rng.integers(0, rows.size, self._batch_size)]
      yield {
        "inputs": self._inputs[pick],
        "label": self._local(task, self._labels[pick]),
      }

  def eval_batches(self, task, split, num_chunks=None):
    del num_chunks  # An example is one chunk.
    if split not in SPLIT_IDS:
      raise ValueError(f"unknown split {split!r}; known: {list(SPLIT_IDS)}")
    rows, b, out = self._rows(task, split), self._eval_size, []
    for start in range(0, rows.size, b):
      pick = rows[start : start + b]
      pad = b - pick.size
      x = self._inputs[pick]
      out.append(
        {
          "inputs": np.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))[:, None],
          "label": np.pad(self._local(task, self._labels[pick]), [(0, pad)]),
          "mask": np.pad(np.ones(pick.size, np.float32), [(0, pad)]),
        }
      )
    return out

  def joint_batches(self, seed):
    rows = np.concatenate([self._rows(t.index, "train") for t in self.tasks])
    task_of = {c: t.index for t in self.tasks for c in t.class_ids}
    rng = np.random.default_rng(seed)
    while True:
      pick = rows[rng.integers(0, rows.size, self._batch_size)]
      labels = self._labels[pick]
      task = np.asarray([task_of[v] for v in labels], np.int32)
      local = [
        list(self.tasks[t].class_ids).index(v)
        for t, v in zip(task, labels, strict=True)
      ]
      yield {
        "inputs": self._inputs[pick],
        "label": np.asarray(local, np.int32),
        "task": task,
      }


def from_arrays(
  inputs: np.ndarray,
  labels: np.ndarray,
  task_groups: Sequence[Sequence[int | str]],
  split: np.ndarray,
  *,
  class_names: Sequence[str] | None = None,
  batch_size: int = 32,
  eval_batch_size: int = 64,
) -> ArrayTaskData:
  """A task-data source of arrays, for `mcl.experiments.run(..., data=)`.

  Args:
    inputs: float [N, T, F] (log-mels: frames x mel bands) or [N, D]
      (features); one chunk per example.
    labels: int [N], class ids 0..C-1.
    task_groups: the task sequence, each task a group of class ids (or of
      `class_names`), e.g. [[0, 1], [2, 3]].
    split: [N] split of each example: 0/1/2 or "train"/"validation"/"test".
    class_names: [C] names of the class ids (default "0", "1", ...).
    batch_size: training batch (examples).
    eval_batch_size: evaluation batch (examples).

  Raises:
    mcl.runtime.errors.UserError: a shape, dtype, split or task group that
      does not fit, named in one line (a class of a task without training,
      validation or test examples too).
  """
  inputs = np.asarray(inputs, np.float32)
  labels, split = np.asarray(labels), np.asarray(split)
  _check(inputs, labels, split)
  split = _split_ids(split)
  if inputs.ndim == 2:
    inputs = inputs[:, None, :]
  num_classes = int(labels.max()) + 1
  names = list(class_names or map(str, range(num_classes)))
  if len(names) < num_classes:
    raise errors.UserError(
      f"{len(names)} class_names for labels up to {num_classes - 1}"
    )
  groups = [[names[g] if not isinstance(g, str) else g for g in group]
            for group in task_groups]  # fmt: skip
  task_list = tasks.make_tasks(groups, names)
  for task in task_list:
    for name, c in zip(task.class_names, task.class_ids, strict=True):
      for s, i in SPLIT_IDS.items():
        if not np.any((labels == c) & (split == i)):
          raise errors.UserError(
            f"class {name!r} (task {task.index}) has no {s} example"
          )
  labels = labels.astype(np.int64)
  return ArrayTaskData(
    inputs, labels, split, task_list, batch_size, eval_batch_size
  )
