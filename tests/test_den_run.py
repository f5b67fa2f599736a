"""Two-task DEN runs on real audio with the tiny config."""

import json
import os
import shutil

import numpy as np
import pytest

from mcl.continual import registry
from mcl.datasets import from_config
from mcl.experiments.continual import runner
from mcl.models import ConvClassifier
from mcl.trainer import checkpointing, train


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
  assert sum(record["selected_units"].values()) > 0
  # The new head's phase must learn (fit returns its start otherwise).
  head = record["phases"]["head"]
  assert head["validation_loss"] < head["validation_loss_before"]
  # Every task learnt: below its untrained network's validation loss.
  assert results["unlearnt_tasks"] == []
  for after, untrained in zip(
    results["validation_loss"],
    results["zero_shot_validation_loss"],
    strict=True,
  ):
    assert after < untrained
  assert results["config"]["den"]["k"] == config.den.k


def test_checkpoint_restores_the_grown_network(finished_run):
  config, workdir, results = finished_run
  checkpoints = checkpointing.TaskCheckpoints(
    os.path.join(workdir, "checkpoints")
  )
  frames = from_config.chunk_frames(config)
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


def _resume_after_kill_in_task_1(config, workdir, tmp_path):
  """A copy of a finished run without task 1's checkpoint, run again."""
  resumed = str(tmp_path / "resumed")
  shutil.copytree(workdir, resumed)
  # A kill during task 1: its checkpoint never finished.
  shutil.rmtree(os.path.join(resumed, "checkpoints", "1"))
  return runner.run(config, resumed)


def test_resume_after_a_kill_equals_the_uninterrupted_run(
  finished_run, tmp_path
):
  config, workdir, results = finished_run
  again = _resume_after_kill_in_task_1(config, workdir, tmp_path)
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
  saved.close()
  # A re-run diverges the same way and says so (the first save is kept),
  # not Orbax's StepAlreadyExistsError.
  with pytest.raises(train.NonFiniteLossError):
    runner.run(tiny_config, workdir)


@pytest.fixture(scope="module")
def method_runs(tmp_path_factory, tiny_audio_dir, tiny_data_dir, finished_run):
  """Every method of the runner on the tiny config: {method: (config,
  dir, results)}; DEN's is the session's `finished_run`."""
  from mcl.configs import test as test_config

  out = {"den": finished_run}
  for name in registry.METHODS:
    if name == "den":
      continue
    config = test_config.get_config()
    config.data.source_dir = tiny_audio_dir
    config.data.data_dir = tiny_data_dir
    config.method = name
    workdir = str(tmp_path_factory.mktemp(name))
    out[name] = (config, workdir, runner.run(config, workdir))
  return out


@pytest.mark.parametrize("name", sorted(registry.METHODS))
def test_every_method_writes_complete_results(method_runs, name):
  _, _, results = method_runs[name]
  assert results["method"] == name and results["finished_tasks"] == 2
  accuracy = results["accuracy_matrix"]
  assert all(a is not None for a in accuracy[1])
  assert (accuracy[0][0] is None) == (name == "joint")
  assert 0.0 <= results["final_class_incremental_accuracy"] <= 1.0
  assert results["pr_auc_matrix"][1][1] is not None
  if name == "joint":
    assert results["bwt"] is None and results["fwt"] is None
  else:
    assert results["fwt"] == pytest.approx(
      results["zero_shot_accuracy"][1] - results["random_init_accuracy"][1]
    )
  per_task = results["params_per_task"]
  if name == "stl":  # Two independent columns, each with its head.
    assert sum(per_task) == results["total_params"]
  elif name == "progressive":  # Task 1 uses everything but head 0
    assert per_task[1] + 8 * 2 + 2 == results["total_params"]  # (8 -> 2).
  assert results["total_nonzero_params"] <= results["total_params"]


@pytest.mark.parametrize("name", ["ewc", "replay"])
def test_stateful_methods_resume_to_the_same_results(
  method_runs, name, tmp_path
):
  config, workdir, results = method_runs[name]
  again = _resume_after_kill_in_task_1(config, workdir, tmp_path)
  assert _matrices(again) == _matrices(results)
  assert again["total_nonzero_params"] == results["total_nonzero_params"]


def _event_scalars(workdir):
  """{tag: {step: value}} of the run's TensorBoard event files."""
  import tensorflow as tf

  out = {}
  for name in os.listdir(workdir):
    if not name.startswith("events.out.tfevents"):
      continue
    for event in tf.compat.v1.train.summary_iterator(
      os.path.join(workdir, name)
    ):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == "scalars":
          out.setdefault(value.tag, {})[event.step] = float(
            tf.make_ndarray(value.tensor)
          )
  return out


def test_run_writes_tensorboard_figures_and_plots(finished_run):
  _, workdir, results = finished_run
  scalars = _event_scalars(workdir)
  matrix = results["accuracy_matrix"]
  # Column j of the matrix, one point per task after j.
  assert scalars["continual/test_accuracy/task0"] == pytest.approx(
    {0: matrix[0][0], 1: matrix[1][0]}
  )
  assert scalars["continual/test_accuracy/task1"] == pytest.approx(
    {1: matrix[1][1]}
  )
  assert scalars["continual/average_accuracy"][1] == pytest.approx(
    results["average_accuracy"]
  )
  assert scalars["continual/bwt"][1] == pytest.approx(results["bwt"])
  assert scalars["continual/params/task1"][1] == results["params_per_task"][1]
  assert any(tag.startswith("task1/selective/") for tag in scalars)
  for name in ("accuracy_matrix.png", "capacity.png"):
    with open(os.path.join(workdir, name), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_den_variants_run_and_resume_with_their_state(tiny_config, tmp_path):
  # den_recal, den_gpm and den_split_topk at once: anchors, GPM bases and
  # recalibrated heads go through the checkpoints and come back.
  tiny_config.den.recalibrate = True
  tiny_config.den.projection = "gpm"
  tiny_config.den.split_top_k = 2
  workdir = str(tmp_path / "variants")
  results = runner.run(tiny_config, workdir)
  assert results["finished_tasks"] == 2
  record = results["task_records"][1]
  assert set(record["recalibration"]) == {"head_0"}
  assert all(len(s["units"]) <= 2 for s in record["splits"])
  saved = checkpointing.TaskCheckpoints(os.path.join(workdir, "checkpoints"))
  state = saved.state(1)
  saved.close()
  assert set(state) >= {"timestamps", "anchor", "anchor_task", "bases"}
  again = _resume_after_kill_in_task_1(tiny_config, workdir, tmp_path)
  assert _matrices(again) == _matrices(results)
