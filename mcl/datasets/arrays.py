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

from mcl.datasets import task_data, tasks
from mcl.runtime import errors

SPLIT_IDS = dict(zip(task_data.SPLITS, range(3), strict=True))


def _check(inputs, labels, split) -> None:
  if inputs.ndim not in (2, 3) or inputs.shape[0] == 0:
    raise errors.UserError(
      f"inputs must be [N, T, F] or [N, D] with N > 0, got shape {inputs.shape}"
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

  Batch sizes are the run's (`with_batches`, from `config.train` when
  `mcl.experiments.run` receives the data).

  Attributes:
    tasks: the task sequence (class ids are label values).
    input_shape: (1, T, F) or (1, 1, D).
    records: "arrays/<sha1>" of the arrays (shapes, dtypes, values) and
      the tasks (names and class ids), so a resumed run is refused on
      other arrays or another task sequence.
  """

  def __init__(self, inputs, labels, split, task_list, batch_size=32,
               eval_batch_size=64):  # fmt: skip
    self._inputs = inputs
    self._labels = labels
    self._split = split
    self.tasks = list(task_list)
    self.input_shape = (1, *inputs.shape[1:])
    self._batch_size = batch_size
    self._eval_size = eval_batch_size
    digest = hashlib.sha1()
    for a in (inputs, labels, split):
      digest.update(f"{a.shape}{a.dtype}".encode())
      digest.update(np.ascontiguousarray(a).tobytes())
    digest.update(
      repr([(t.class_names, t.class_ids) for t in self.tasks]).encode()
    )
    self.records = f"arrays/{digest.hexdigest()[:16]}"

  def with_batches(self, batch_size: int, eval_batch_size: int):
    """The same data drawn in batches of these sizes (examples).

    Raises:
      mcl.runtime.errors.UserError: a size below 1.
    """
    if batch_size < 1 or eval_batch_size < 1:
      raise errors.UserError(
        f"batch sizes must be >= 1, got {batch_size}, {eval_batch_size}"
      )
    return ArrayTaskData(
      self._inputs, self._labels, self._split, self.tasks, batch_size,
      eval_batch_size,
    )  # fmt: skip

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
    task_data.check_split(split)
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
        self._local(t, [v])[0] for t, v in zip(task, labels, strict=True)
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
  bad = [
    g
    for group in task_groups
    for g in group
    if not isinstance(g, str) and not 0 <= g < len(names)
  ]
  if bad:
    raise errors.UserError(
      f"task groups name class ids {bad}; labels are 0..{len(names) - 1}"
    )
  groups = [[g if isinstance(g, str) else names[g] for g in group]
            for group in task_groups]  # fmt: skip
  task_list = tasks.make_tasks(groups, names)
  for task in task_list:
    for name, c in zip(task.class_names, task.class_ids, strict=True):
      for s, i in SPLIT_IDS.items():
        if not np.any((labels == c) & (split == i)):
          raise errors.UserError(
            f"class {name!r} (task {task.index}) has no {s} example"
          )
  return ArrayTaskData(inputs, labels.astype(np.int64), split, task_list)
