"""`mcl.predict` on a tiny DEN run: the run's own scores, clip by clip."""

import csv
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mcl import experiments
from mcl import inspect as run_inspect
from mcl.continual import registry, scoring
from mcl.datasets import from_config
from mcl.experiments import prediction
from mcl.runtime import errors
from mcl.trainer import checkpointing, metrics
from tests import forks, test_audio


@pytest.fixture(scope="module")
def run(finished_run):
  """The session's tiny DEN run (tests/conftest.py)."""
  return finished_run


def _test_clips(config, task_data, task):
  """Paths of task `task`'s test clips, in the evaluation's order."""
  ds = task_data.builder.as_dataset(split=task_data.split.test)
  paths = []
  for example in tfds.as_numpy(ds):
    if int(example["label"]) in task.class_ids:
      clip_id = example["clip_id"].decode()
      paths.append(os.path.join(config.data.source_dir, clip_id + ".wav"))
  return paths


def test_predict_equals_the_runs_evaluation_clip_by_clip(run):
  config, workdir, results = run
  task_data = from_config.build(config)
  params, metadata = run_inspect.load(workdir)
  method = registry.METHODS[config.method].from_config(
    config, tuple(metadata["input_shape"])
  )
  checkpoints = checkpointing.TaskCheckpoints(
    os.path.join(workdir, "checkpoints")
  )
  state = checkpoints.state(1)
  checkpoints.close()
  out = prediction.predict(workdir, [config.data.source_dir])
  assert out.checkpoint == 1 and not out.skipped
  by_path = {p.path: p for p in out.predictions}
  assert len(by_path) == 20  # Every clip of the folder, none skipped.

  union_p, union_labels, offset = [], [], 0
  for task in task_data.tasks:
    paths = _test_clips(config, task_data, task)
    assert paths
    # The run's evaluation path: records, tf.data, batches of 4 clips.
    network = method.network(params, state, task.index)
    evaluated = scoring.evaluate(
      network, task_data.eval_batches(task.index, "test")
    )
    scores = [by_path[p].scores[f"task{task.index}"] for p in paths]
    assert all(s.names == task.class_names for s in scores)
    probabilities = np.stack([s.probabilities for s in scores])
    np.testing.assert_allclose(
      probabilities, evaluated.probabilities, atol=1e-5
    )
    np.testing.assert_array_equal(
      probabilities.argmax(1), evaluated.probabilities.argmax(1)
    )
    # ... and the figures the run wrote after its last task.
    labels = np.array([task.class_names.index(p.split("/")[-2]) for p in paths])
    assert metrics.accuracy(probabilities, labels) == pytest.approx(
      results["accuracy_matrix"][1][task.index]
    )
    union_p += [by_path[p].scores[prediction.ALL].probabilities for p in paths]
    union_labels += list(labels + offset)
    offset += task.num_classes
  assert metrics.accuracy(
    np.stack(union_p), np.array(union_labels)
  ) == pytest.approx(results["final_class_incremental_accuracy"])
  all_scores = out.predictions[0].scores[prediction.ALL]
  assert all_scores.names == ("blues", "classical", "metal", "pop")
  assert all_scores.probabilities.sum() == pytest.approx(1.0)


def test_predict_skips_and_names_bad_files(run, gtzan_dir, tmp_path):
  _, workdir, _ = run
  folder = tmp_path / "mixed"
  folder.mkdir()
  good = os.path.join(gtzan_dir, "jazz", "jazz.00002.wav")
  os.symlink(good, folder / "jazz.wav")
  (folder / "broken.mp3").write_bytes(os.urandom(1024))
  (folder / "notes.txt").write_text("not audio")
  missing = str(tmp_path / "absent.ogg")

  out = prediction.predict(workdir, [str(folder), missing], checkpoint=0)

  assert [p.path for p in out.predictions] == [str(folder / "jazz.wav")]
  assert out.checkpoint == 0
  assert list(out.predictions[0].scores) == ["task0", prediction.ALL]
  problems = {os.path.basename(s["path"]): s["problem"] for s in out.skipped}
  assert problems["broken.mp3"].startswith("undecodable")
  assert "unsupported extension" in problems["notes.txt"]
  assert problems["absent.ogg"] == "file does not exist"
  with pytest.raises(errors.UserError, match="heads 0..1"):
    prediction.predict(workdir, [good], task=9)
  with pytest.raises(errors.UserError, match="no checkpoint of task 5"):
    prediction.predict(workdir, [good], checkpoint=5)
  with pytest.raises(errors.UserError, match="not a run folder"):
    prediction.predict(str(tmp_path), [good])


def test_predict_skips_damaged_float_wavs_and_goes_on(run, gtzan_dir, tmp_path):
  _, workdir, _ = run
  folder = tmp_path / "damaged"
  folder.mkdir()
  damaged = test_audio.write_damaged_float_wavs(gtzan_dir, str(folder))
  good = [
    os.path.join(gtzan_dir, g, f"{g}.00008.wav") for g in ("blues", "metal")
  ]
  # Good files before and after the damaged ones: the batch goes on.
  out = prediction.predict(
    workdir, [good[0], str(folder), damaged["loud_1e30.wav"], good[1]]
  )
  assert [p.path for p in out.predictions] == good
  for scored in out.predictions:
    for scores in scored.scores.values():
      assert np.all(np.isfinite(scores.probabilities))
      assert scores.probabilities.sum() == pytest.approx(1.0)
  problems = [(s["path"], s["problem"]) for s in out.skipped]
  assert [path for path, _ in problems] == [
    *(damaged[name] for name in sorted(damaged)),
    damaged["loud_1e30.wav"],
  ]
  for path, problem in problems:
    name = os.path.basename(path)
    assert problem.startswith(test_audio.DAMAGED_FLOAT_WAVS[name])


def test_command_line_prints_the_table_and_writes_json_and_csv(
  run, gtzan_dir, tmp_path, forked
):
  _, workdir, _ = run
  paths = [
    os.path.join(gtzan_dir, g, f"{g}.00007.wav") for g in ("blues", "pop")
  ]
  output = str(tmp_path / "out")
  done = forked.run(
    forks.cli("mcl.predict"),
    [f"--workdir={workdir}", f"--output={output}", "--task=1", *paths],
  )
  assert done.returncode == 0, done.stderr
  lines = done.stdout.splitlines()
  assert lines[0] == "checkpoint after task 1"
  assert lines[1].split() == ["file", "task1", "all"]
  assert lines[2].startswith(paths[0]) and lines[3].startswith(paths[1])
  with open(output + ".json") as f:
    content = json.load(f)
  first = content["predictions"][0]
  assert set(first["scores"]["task1"]) == {"metal", "pop"}
  assert first["predicted"]["all"] == max(
    first["scores"]["all"], key=first["scores"]["all"].get
  )
  with open(output + ".csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 2 * (2 + 4)  # Per file: 2 task-1 classes, 4 in all.
  assert {r["scope"] for r in rows} == {"task1", "all"}

  bad = forked.run(
    forks.cli("mcl.predict"), [f"--workdir={workdir}", "--task=9", paths[0]]
  )
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines()[-1].startswith("error: --task=9")
  assert "Traceback" not in bad.stderr


def test_a_resume_may_not_change_what_predict_relies_on(run):
  config, workdir, _ = run
  with open(os.path.join(workdir, "config.json")) as f:
    started = f.read()
  changed = config.copy_and_resolve_references()
  changed.features.n_mels = 64
  with pytest.raises(errors.UserError, match="features"):
    experiments.run(changed, workdir)
  with open(os.path.join(workdir, "config.json")) as f:
    assert f.read() == started  # Untouched.


def test_a_class_incremental_run_answers_among_every_class_seen(
  tmp_path, tiny_audio_dir, tiny_data_dir
):
  config = experiments.load_config("configs/test.py")
  config.data.source_dir = tiny_audio_dir
  config.data.data_dir = tiny_data_dir
  config.scenario, config.method = "class_incremental", "icarl"
  workdir = str(tmp_path / "icarl")
  results = experiments.run(config, workdir)
  task_data = from_config.build(config)
  out = prediction.predict(workdir, [config.data.source_dir])
  by_path = {p.path: p for p in out.predictions}
  probabilities, labels = [], []
  for task in task_data.tasks:
    for path in _test_clips(config, task_data, task):
      (scores,) = by_path[path].scores.values()  # "all" only
      assert scores.names == ("blues", "classical", "metal", "pop")
      probabilities.append(scores.probabilities)
      labels.append(scores.names.index(path.split("/")[-2]))
  assert np.sum(probabilities, axis=1) == pytest.approx(1.0)
  assert metrics.accuracy(np.stack(probabilities), np.array(labels)) == (
    pytest.approx(results["final_class_incremental_accuracy"])
  )
  with pytest.raises(errors.UserError, match="class-incremental run"):
    prediction.predict(workdir, [config.data.source_dir], task=0)
