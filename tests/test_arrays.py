"""Continual runs on a user's own arrays (`mcl.datasets.arrays`)."""

import numpy as np
import pytest

from mcl import experiments
from mcl.configs import arrays as arrays_config
from mcl.configs import permuted_digits
from mcl.datasets import arrays
from mcl.runtime import errors

CLASSES, PER_SPLIT = 4, (24, 8, 8)


def _separable(shape, seed=0):
  """Examples of 4 classes, each a fixed pattern plus noise; a split id
  per example (24 train, 8 validation, 8 test per class)."""
  rng = np.random.default_rng(seed)
  patterns = rng.normal(size=(CLASSES, *shape)) * 2
  x, y, split = [], [], []
  for c in range(CLASSES):
    for s, n in enumerate(PER_SPLIT):
      x.append(patterns[c] + rng.normal(size=(n, *shape)))
      y += [c] * n
      split += [s] * n
  return np.concatenate(x).astype(np.float32), np.asarray(y), np.asarray(split)


def _config(method):
  config = permuted_digits.tiny(arrays_config.get_config())
  config.method = method
  config.train.batch_size = 16
  config.train.eval_batch_size = 16
  return config


@pytest.mark.parametrize(
  ("method", "shape"), [("den", (6, 8)), ("replay", (20,))]
)
def test_methods_learn_array_tasks_task_and_class_incrementally(
  tmp_path, method, shape
):
  x, y, split = _separable(shape)
  data = arrays.from_arrays(x, y, [[0, 1], [2, 3]], split)
  assert data.input_shape == ((1, *shape) if len(shape) == 2 else (1, 1, 20))
  out = experiments.run(_config(method), str(tmp_path / method), data=data)
  matrix = out["accuracy_matrix"]
  assert matrix[0][1] is None and None not in matrix[1]
  assert min(matrix[1]) >= 0.75  # Both tasks, task id given.
  assert None not in out["class_incremental_accuracy"]
  assert out["final_class_incremental_accuracy"] > 0.25  # Above chance.
  assert out["tasks"] == [["0", "1"], ["2", "3"]]


def test_resuming_on_other_arrays_or_tasks_is_refused(tmp_path):
  x, y, split = _separable((20,))
  config = _config("finetune")
  config.train.fit.max_steps = 6
  config.train.fit.eval_every = 3
  workdir = str(tmp_path / "run")
  data = arrays.from_arrays(x, y, [[0, 1], [2, 3]], split)
  experiments.run(config, workdir, data=data)
  for other in (
    arrays.from_arrays(x + 1, y, [[0, 1], [2, 3]], split),
    arrays.from_arrays(x, y, [[2, 3], [0, 1]], split),
  ):
    with pytest.raises(errors.UserError, match="records"):
      experiments.run(config, workdir, data=other)


def test_groups_out_of_label_order_and_by_name_remap_labels():
  x, y, split = _separable((20,))
  names = ["rock", "jazz", "pop", "blues"]
  data = arrays.from_arrays(x, y, [["blues", "jazz"], [0, 2]], split,
                            class_names=names)  # fmt: skip
  assert [t.class_ids for t in data.tasks] == [(3, 1), (0, 2)]
  batches = data.with_batches(8, 8)
  for task, ids in ((0, (3, 1)), (1, (0, 2))):
    batch = next(batches.train_batches(task, seed=0))
    # Local label k is class ids[k]: the pattern of that class.
    for inputs, label in zip(batch["inputs"], batch["label"], strict=True):
      rows = np.flatnonzero((y == ids[label]) & (split == 0))
      assert np.any(np.all(x[rows] == inputs, axis=1))
    evaluated = batches.eval_batches(task, "test")
    labels = [b["label"][b["mask"] > 0] for b in evaluated]
    assert np.bincount(np.concatenate(labels)).tolist() == [8, 8]
  joint = next(batches.joint_batches(seed=0))
  for inputs, label, task in zip(
    joint["inputs"], joint["label"], joint["task"], strict=True
  ):
    cls = data.tasks[task].class_ids[label]
    assert np.any(np.all(x[y == cls] == inputs[0], axis=1))


@pytest.mark.parametrize(
  ("change", "message"),
  [
    (lambda x, y, s: (x[..., None, None], y, s), "must be \\[N, T, F\\]"),
    (lambda x, y, s: (x, y[:-1], s), "must be \\[N\\]"),
    (lambda x, y, s: (x, y, np.where(s == 2, 3, s)), "split ids"),
    (lambda x, y, s: (x, y, np.where(s == 2, 1, s)), "no test example"),
    (lambda x, y, s: (x[:0], y[:0], s[:0]), "N > 0"),
  ],
)
def test_bad_arrays_are_one_line_errors(change, message):
  """Shapes, split ids, empty splits; see also the task-group case."""
  x, y, split = change(*_separable((20,)))
  with pytest.raises(errors.UserError, match=message) as error:
    arrays.from_arrays(x, y, [[0, 1], [2, 3]], split)
  assert "\n" not in str(error.value)


def test_arrays_source_needs_data_and_data_needs_it(tmp_path):
  x, y, split = _separable((20,))
  data = arrays.from_arrays(x, y, [[0, 1], [2, 3]], split)
  with pytest.raises(errors.UserError, match="data="):
    experiments.run(_config("den"), str(tmp_path / "a"))
  with pytest.raises(errors.UserError, match="data="):
    experiments.run(
      permuted_digits.get_config(), str(tmp_path / "b"), data=data
    )


def test_task_groups_out_of_range_are_one_line_errors():
  x, y, split = _separable((20,))
  for groups in ([[0, 4], [1, 2]], [[-1, 0], [1, 2]]):
    with pytest.raises(errors.UserError, match="labels are 0..3") as error:
      arrays.from_arrays(x, y, groups, split)
    assert "\n" not in str(error.value)
