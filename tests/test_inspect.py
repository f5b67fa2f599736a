import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mcl import inspect as mcl_inspect
from mcl.continual import surgery
from mcl.models import ConvClassifier
from mcl.runtime import errors
from mcl.trainer import checkpointing


def _save(checkpoints, task, params, stamps, record):
  checkpoints.save(
    task,
    params,
    {
      "task": task,
      "model": "conv_classifier",
      "input_shape": [1, 16, 8],
      "architecture": checkpointing.architecture(
        ConvClassifier.from_params(params)
      ),
      "timestamps": {k: v.tolist() for k, v in stamps.items()},
      "record": record,
    },
  )


def test_report_counts_units_by_timestamp(tmp_path):
  model = ConvClassifier((3, 4), (5,), (2,))
  layers = model.hidden_layers
  params = jax.tree.map(
    np.array,
    jax.device_get(
      model.init(jax.random.key(0), jnp.zeros((1, 16, 8)))["params"]
    ),
  )
  params["conv_1"]["kernel"][..., 0] = 0.0  # 9 * 3 of 36 entries
  stamps = {n: np.zeros(params[n]["bias"].shape, np.int32) for n in layers}
  checkpoints = checkpointing.TaskCheckpoints(str(tmp_path / "checkpoints"))
  _save(checkpoints, 0, params, stamps, {})

  grown = surgery.add_head(
    params, layers[-1], "head_1", 2, np.random.default_rng(0)
  )
  grown, grown_stamps = surgery.grow(
    grown, stamps, layers, ("head_0", "head_1"), 2, 1, np.random.default_rng(1)
  )
  grown["dense_0"]["kernel"][:3, 1] += 1.0  # drift of one shared unit
  record = {
    "selected_units": {"conv_0": 2, "conv_1": 3, "dense_0": 4},
    "phases": {
      "selective": {
        "steps": 40,
        "validation_loss_before": 0.6,
        "validation_loss": 0.25,
        "validation_accuracy": 1.0,
      }
    },
    "splits": [
      {
        "layer": "dense_0",
        "units": [1],
        "duplicates": [7],
        "drifts": [1.7320508],
      }
    ],
  }
  _save(checkpoints, 1, grown, grown_stamps, record)
  checkpoints.close()

  loaded, metadata = mcl_inspect.load(str(tmp_path))
  assert metadata["task"] == 1
  rows = {
    r["layer"]: r
    for r in mcl_inspect.layer_report(
      loaded, {k: np.asarray(v) for k, v in metadata["timestamps"].items()}
    )
  }
  assert rows["conv_0"]["units_by_timestamp"] == {0: 3, 1: 2}
  assert rows["conv_1"]["units_by_timestamp"] == {0: 4, 1: 2}
  assert rows["dense_0"]["units_by_timestamp"] == {0: 5, 1: 2}
  # conv_1 is [3, 3, 5, 6]: 27 zeroed entries, plus the zero rows from the
  # two new conv_0 units into the four old conv_1 channels (9 * 2 * 4).
  assert rows["conv_1"]["zero_share"] == (27 + 72) / (9 * 5 * 6)

  text = mcl_inspect.format_report(loaded, metadata)
  assert "split dense_0: 1->7 (1.732)" in text
  assert (
    "selective retraining |S|: {'conv_0': 2, 'conv_1': 3, 'dense_0': 4}" in text
  )
  assert "phase selective: 40 steps, validation loss 0.6000 -> 0.2500" in text
  base = 9 * 3 + 3 + 9 * 3 * 4 + 4 + 4 * 5 + 5 + 5 * 2 + 2
  grown_count = 9 * 5 + 5 + 9 * 5 * 6 + 6 + 6 * 7 + 7 + 7 * 2 + 2
  assert f"parameters per task: [{base}, {grown_count}]" in text

  before, _ = mcl_inspect.load(str(tmp_path), 0)
  diff = {
    r["layer"]: r for r in mcl_inspect.diff_report(before, loaded, layers)
  }
  assert diff["conv_0"]["units_added"] == 2
  assert diff["dense_0"]["shared_units_changed"] == 1
  # Per incoming weight: 3 of 4 rows + bias moved by 1.
  assert diff["dense_0"]["max_drift"] == pytest.approx(np.sqrt(3.0 / 5))
  assert diff["conv_1"]["shared_units_changed"] == 0
  assert diff["conv_1"]["zeros_kept"] == 1.0  # Its 27 zeros untouched.

  # A task beyond the run, or a folder that is no run: what to change.
  with pytest.raises(errors.UserError, match=r"finished tasks: \[0, 1\]"):
    mcl_inspect.load(str(tmp_path), 9)
  with pytest.raises(errors.UserError, match="not a continual run"):
    mcl_inspect.load(str(tmp_path / "typo"))
  assert not (tmp_path / "typo").exists()


def test_column_methods_report_every_group_with_its_zeros():
  params = {
    "conv_0_col0": {"kernel": np.zeros((3, 3, 1, 2)), "bias": np.ones(2)},
    "head_0": {"kernel": np.ones((2, 2)), "bias": np.zeros(2)},
  }
  text = mcl_inspect.format_report(params, {"task": 0})
  lines = text.splitlines()
  assert lines[0] == "after task 0"
  assert "conv_0_col0:      20 scalars, 90.0% zeros" in lines[1]
  assert "head_0:       6 scalars, 33.3% zeros" in lines[2]
