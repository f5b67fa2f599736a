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
  data = arrays.from_arrays(x, y, [[0, 1], [2, 3]], split, batch_size=16)
  assert data.input_shape == ((1, *shape) if len(shape) == 2 else (1, 1, 20))
  out = experiments.run(_config(method), str(tmp_path / method), data=data)
  matrix = out["accuracy_matrix"]
  assert matrix[0][1] is None and None not in matrix[1]
  assert min(matrix[1]) >= 0.75  # Both tasks, task id given.
  assert None not in out["class_incremental_accuracy"]
  assert out["final_class_incremental_accuracy"] > 0.25  # Above chance.
  assert out["tasks"] == [["0", "1"], ["2", "3"]]


def test_resuming_on_other_arrays_is_refused(tmp_path):
  x, y, split = _separable((20,))
  config = _config("finetune")
  config.train.fit.max_steps = 6
  config.train.fit.eval_every = 3
  workdir = str(tmp_path / "run")
  data = arrays.from_arrays(x, y, [[0, 1], [2, 3]], split, batch_size=16)
  experiments.run(config, workdir, data=data)
  other = arrays.from_arrays(x + 1, y, [[0, 1], [2, 3]], split, batch_size=16)
  with pytest.raises(errors.UserError, match="records"):
    experiments.run(config, workdir, data=other)


@pytest.mark.parametrize(
  ("change", "message"),
  [
    (lambda x, y, s: (x[..., None, None], y, s), "must be \\[N, T, F\\]"),
    (lambda x, y, s: (x, y[:-1], s), "must be \\[N\\]"),
    (lambda x, y, s: (x, y, np.where(s == 2, 3, s)), "split ids"),
    (lambda x, y, s: (x, y, np.where(s == 2, 1, s)), "no test example"),
  ],
)
def test_bad_arrays_are_one_line_errors(change, message):
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
