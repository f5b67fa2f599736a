"""Two-task DEN runs on real audio with the tiny config."""

import json
import os
import shutil

import numpy as np
import pytest

from mcl import checkpointing, train
from mcl.continual import runner
from mcl.models import ConvClassifier


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_audio_dir, tiny_data_dir):
  from configs import test as test_config

  config = test_config.get_config()
  config.data.source_dir = tiny_audio_dir
  config.data.data_dir = tiny_data_dir
  workdir = str(tmp_path_factory.mktemp("den_run"))
  return config, workdir, runner.run(config, workdir)


def _matrices(results):
  return results["accuracy_matrix"], results["auroc_matrix"]


def test_two_task_den_run_writes_results(finished_run):
  config, workdir, results = finished_run
  with open(os.path.join(workdir, "results.json")) as f:
    on_disk = json.load(f)
  assert _matrices(on_disk) == _matrices(results)
  assert results["method"] == "den"
  assert results["tasks"] == [["blues", "classical"], ["metal", "pop"]]
  accuracy = results["accuracy_matrix"]
  assert accuracy[0][1] is None
  validation = results["validation_accuracy_matrix"]
  assert validation[0][1] is None and validation[1][1] is not None
  assert all(0.0 <= a <= 1.0 for row in accuracy for a in row if a is not None)
  assert results["bwt"] == pytest.approx(accuracy[1][0] - accuracy[0][0])
  assert results["average_accuracy"] == pytest.approx(np.mean(accuracy[1]))
  assert len(results["seconds_per_task"]) == 2
  units = results["units_per_layer"]
  assert units[0] == {"conv_0": 4, "conv_1": 8, "dense_0": 8}
  assert all(units[1][k] >= units[0][k] for k in units[0])
  # Task 0 sees the initial network plus head 0; task 1 at least that
  # much (shared units) plus its own head and any new units.
  assert results["params_per_task"][0] == (
    9 * 4 + 4 + 9 * 4 * 8 + 8 + 8 * 8 + 8 + 8 * 2 + 2
  )
  record = results["task_records"][1]
  assert set(record["phases"]) >= {"head", "selective"}
  assert results["config"]["den"]["k"] == config.den.k


def test_checkpoint_restores_the_grown_network(finished_run):
  config, workdir, results = finished_run
  checkpoints = checkpointing.TaskCheckpoints(
    os.path.join(workdir, "checkpoints")
  )
  frames = runner.chunk_frames(config)
  params, metadata = checkpoints.restore(
    1,
    checkpointing.abstract_params(
      ConvClassifier, (1, frames, config.features.n_mels)
    ),
  )
  assert metadata["units_per_layer"] == results["units_per_layer"][1]
  for name, width in metadata["units_per_layer"].items():
    assert params[name]["bias"].shape == (width,)
    assert len(metadata["timestamps"][name]) == width


def test_resume_after_a_kill_equals_the_uninterrupted_run(
  finished_run, tmp_path
):
  config, workdir, results = finished_run
  resumed = str(tmp_path / "resumed")
  shutil.copytree(workdir, resumed)
  # A kill during task 1: its checkpoint never finished.
  shutil.rmtree(os.path.join(resumed, "checkpoints", "1"))
  again = runner.run(config, resumed)
  assert _matrices(again) == _matrices(results)
  assert again["units_per_layer"] == results["units_per_layer"]

  fresh = runner.run(config, str(tmp_path / "fresh"))
  assert _matrices(fresh) == _matrices(results)


def test_non_finite_loss_stops_with_state_saved(tiny_config, tmp_path):
  tiny_config.train.fit.learning_rate = 1e30
  tiny_config.den.l1 = 0.0
  workdir = str(tmp_path / "diverged")
  with pytest.raises(train.NonFiniteLossError):
    runner.run(tiny_config, workdir)
  saved = checkpointing.TaskCheckpoints(os.path.join(workdir, "nonfinite"))
  assert saved.tasks() == [0]
  assert saved.metadata(0)["phase"] == "task0/sparse"
