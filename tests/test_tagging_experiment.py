"""The MTAT top-50 experiment end to end, on real audio laid out as MTAT."""

import json
import os
import shutil

import flax
import numpy as np
import pytest

from mcl import experiments
from mcl.configs import mtat_short_chunk_cnn
from mcl.datasets import input_pipeline
from mcl.experiments import prediction
from mcl.experiments import tagging as experiment
from mcl.runtime import errors
from mcl.trainer import evaluation, metrics
from tests.conftest import MTAT_FOLDERS, MTAT_GENRES


@pytest.fixture(scope="module")
def tiny_run(mtat_from_gtzan, tmp_path_factory):
  """One finished tiny run for the module: (config, workdir, results)."""
  root = tmp_path_factory.mktemp("tagging")
  config = mtat_short_chunk_cnn.get_config()
  config.data.manual_dir = mtat_from_gtzan
  config.data.data_dir = str(root / "tfds")
  config.data.num_tags = 5  # The stand-in label file has 5 tag columns.
  config.features.min_seconds = 3.0  # GTZAN excerpts are 15-20 s.
  config.model.widths.n_channels = 4
  config.train.batch_size = 4
  config.data.eval_chunks = 2
  config.train.eval_batch_size = 4
  config.train.stages = (("adam", 1e-3, 1), ("sgd", 1e-3, 5))
  config.train.steps_per_epoch = 3
  config.train.max_epochs = 2
  workdir = str(root / "run")
  return config, workdir, experiments.run(config, workdir)


def test_tagging_experiment_trains_tests_and_resumes(tiny_run, tmp_path):
  config, finished, results = tiny_run
  workdir = str(tmp_path / "run")
  shutil.copytree(finished, workdir)  # Resumed below; the original stays.
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f) == results

  assert results["clips"] == {"train": 24, "valid": 8, "test": 8}
  assert results["provenance"]["packages"]["flax"] == flax.__version__
  assert results["tags"][0] == "guitar"  # On all 40 clips: most frequent.
  assert sorted(results["tags"][1:]) == ["classical", "metal", "pop", "rock"]
  history = results["history"]
  assert [p["stage"] for p in history] == [0, 1]  # Adam, then SGD.
  assert results["steps"] == 6
  # "guitar" has no negative clip and is left out; the 4 genres count.
  assert 0.0 <= results["test"]["roc_auc"] <= 1.0
  assert 0.0 <= results["test"]["pr_auc"] <= 1.0
  best = min(history, key=lambda p: p["validation_loss"])
  assert results["validation"]["loss"] == pytest.approx(best["validation_loss"])

  longer = config.copy_and_resolve_references()
  longer.train.max_epochs = 3  # Another budget is another run.
  with pytest.raises(errors.UserError, match=r"train.max_epochs \(2 -> 3\)"):
    experiments.run(longer, workdir)
  os.remove(os.path.join(workdir, "results.json"))  # Killed before it.
  resumed = experiments.run(config, workdir)  # From the last save.
  assert resumed["history"] == history and resumed["test"] == results["test"]


def test_predict_tags_the_test_clips_as_the_run_scored_them(tiny_run):
  config, workdir, results = tiny_run
  # The test split: folders d-f, here clips 8 and 9 of each genre.
  paths = [
    os.path.join(config.data.manual_dir, "mp3", folder, f"{genre}.{i:05d}.mp3")
    for genre in MTAT_GENRES
    for i, folder in enumerate(MTAT_FOLDERS)
    if folder in "def"
  ]
  out = prediction.predict(workdir, paths)
  assert len(out.predictions) == 8 and not out.skipped
  scores = [p.scores[prediction.TAGS] for p in out.predictions]
  assert scores[0].names == tuple(results["tags"])
  probabilities = np.stack([s.probabilities for s in scores])
  tags = np.array(
    [
      [t in ("guitar", p.split("/")[-1].split(".")[0]) for t in results["tags"]]
      for p in paths
    ],
    np.float32,
  )
  assert metrics.tag_roc_auc(probabilities, tags) == pytest.approx(
    results["test"]["roc_auc"], abs=1e-6
  )
  assert metrics.tag_pr_auc(probabilities, tags) == pytest.approx(
    results["test"]["pr_auc"], abs=1e-6
  )
  # Clip by clip, the records-and-tf.data evaluation of the same variables.
  builder = experiment.build_dataset(config)
  order = [
    os.path.join(config.data.manual_dir, "mp3", ex["mp3_path"].decode())
    for ex in builder.as_dataset(split="test").as_numpy_iterator()
  ]
  scorer = prediction._Tagging(workdir, config)
  evaluated = evaluation.evaluate_tags(
    scorer.model,
    scorer.variables,
    input_pipeline.tagging_eval_batches(
      builder,
      "test",
      feature=config.input.feature,
      chunk_length=config.input.length,
      num_chunks=config.data.eval_chunks,
      batch_size=config.train.eval_batch_size,
    ),
  )
  by_path = dict(zip(paths, probabilities, strict=True))
  np.testing.assert_allclose(
    np.stack([by_path[p] for p in order]), evaluated.probabilities, atol=1e-5
  )
  top = scores[0].top(3)
  assert [p for _, p in top] == sorted([p for _, p in top], reverse=True)
