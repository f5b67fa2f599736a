"""Frozen-encoder records: stored embeddings, their identity, padded
clips, and every continual method on an MLP over them (real GTZAN audio,
the musicnn package's MSD_musicnn checkpoint)."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
import soundfile
import tensorflow_datasets as tfds

from mcl import experiments, models
from mcl import inspect as run_inspect
from mcl.configs import gtzan_musicnn
from mcl.continual import registry, scoring
from mcl.datasets import encoded_folders, from_config, labelled_folders
from mcl.experiments import prediction
from mcl.features import audio, logmel, patches
from mcl.models import encoders, musicnn_checkpoint
from mcl.models.conv_classifier import encoder_name
from mcl.trainer import checkpointing, metrics
from tests import conftest, forks

HOP_SECONDS = 6.0  # 2-3 patches of a 15-20 s excerpt: a fast build.


def tiny_encoder_config(audio_dir, data_dir):
  """configs/gtzan_musicnn.py at test size: two tasks, a 16-8 MLP."""
  config = gtzan_musicnn.get_config()
  config.tasks = (("blues", "classical"), ("metal", "pop"))
  config.data.source_dir = audio_dir
  config.data.data_dir = data_dir
  config.data.patch_hop_seconds = HOP_SECONDS
  config.data.eval_chunks = 3
  config.model.widths.dense_widths = (16, 8)
  config.train.batch_size = 8
  config.train.eval_batch_size = 4
  config.train.fit.learning_rate = 1e-2
  config.train.fit.max_steps = 10
  config.train.fit.eval_every = 5
  config.train.fit.patience = 2
  config.den.k = 2
  config.replay.memory_clips = 4
  config.replay.batch_size = 4
  return config


@pytest.fixture(scope="module")
def short_clip_dir(gtzan_dir, tmp_path_factory):
  """blues and classical: 3 real clips each, one blues clip cut to 2.0 s
  (shorter than a patch) and one classical clip cut to 0.3 s (shorter
  than features.min_seconds)."""
  root = tmp_path_factory.mktemp("short_clips")
  for genre in ("blues", "classical"):
    os.makedirs(root / genre)
    for i in range(3):
      name = f"{genre}.{i:05d}.wav"
      os.symlink(os.path.join(gtzan_dir, genre, name), root / genre / name)
  for genre, seconds in (("blues", 2.0), ("classical", 0.3)):
    signal, rate = soundfile.read(
      os.path.join(gtzan_dir, genre, f"{genre}.00003.wav")
    )
    soundfile.write(
      root / genre / f"{genre}.short.wav", signal[: int(seconds * rate)], rate
    )
  return str(root)


@pytest.fixture(scope="module")
def encoder_run(tiny_audio_dir, tiny_data_dir, tmp_path_factory):
  """(config, workdir, results) of a tiny DEN run on MSD_musicnn records."""
  config = tiny_encoder_config(tiny_audio_dir, tiny_data_dir)
  workdir = str(tmp_path_factory.mktemp("encoder_run"))
  return config, workdir, experiments.run(config, workdir)


def test_patches_hop_and_pad():
  x = np.arange(10 * 2, dtype=np.float32).reshape(10, 2)
  cut = patches.cut(x, 4, 3)
  assert cut.shape == (3, 4, 2)
  np.testing.assert_array_equal(cut[1], x[3:7])
  short = patches.cut(x[:3], 4, 3)
  assert short.shape == (1, 4, 2)
  np.testing.assert_array_equal(short[0, 3], 0.0)
  assert patches.hop_frames(1.5, 16_000, 256) == 94


def test_stored_embeddings_equal_the_flax_ports_sown_layer(encoder_run):
  config, _, _ = encoder_run
  builder, _ = from_config.audio_builder(config)
  assert builder.info.metadata["layer"] == "penultimate"
  record = next(iter(tfds.as_numpy(builder.as_dataset(split="fold0"))))
  path = os.path.join(
    config.data.source_dir, record["clip_id"].decode() + ".wav"
  )
  log_mel = logmel.musicnn_log_mel(audio.load_audio(path, 16_000))
  hop = patches.hop_frames(HOP_SECONDS, 16_000, 256)
  starts = range(0, log_mel.shape[0] - 187 + 1, hop)
  fixed = np.stack([log_mel[s : s + 187] for s in starts])
  pretrained = musicnn_checkpoint.load("MSD_musicnn")
  _, sown = pretrained.model.apply(
    pretrained.variables, fixed, train=False, mutable=["intermediates"]
  )
  expected = np.asarray(sown["intermediates"]["penultimate"][0])
  assert record["embedding"].shape == expected.shape == (len(starts), 200)
  np.testing.assert_allclose(record["embedding"], expected, atol=1e-5)


def test_other_encoder_or_layer_gives_other_records(encoder_run):
  config, _, _ = encoder_run
  builder, _ = from_config.audio_builder(config)
  log_mels = labelled_folders.build(
    config.data.source_dir,
    config.data.data_dir,
    audio.FeatureConfig(**config.features),
    num_folds=config.data.num_folds,
    pad_seconds=from_config.PATCH_SECONDS,
  )
  same = encoded_folders.make_config(
    log_mels, "MSD_musicnn", "penultimate", HOP_SECONDS
  )
  assert same.name == builder.builder_config.name
  names = {
    encoded_folders.make_config(log_mels, e, layer, hop).name
    for e, layer, hop in (
      ("MSD_musicnn", "penultimate", HOP_SECONDS),
      ("MTT_musicnn", "penultimate", HOP_SECONDS),
      ("MSD_musicnn", "cnn3_max_mean", HOP_SECONDS),
      ("MSD_musicnn", "penultimate", 3.0),
    )
  }
  assert len(names) == 4
  other_layer = tiny_encoder_config(
    config.data.source_dir, config.data.data_dir
  )
  other_layer.data.encoder_layer = "cnn3_max_mean"
  other, _ = from_config.audio_builder(other_layer)
  assert other.data_dir != builder.data_dir
  row = next(iter(tfds.as_numpy(other.as_dataset(split="fold0"))))
  assert row["embedding"].shape[-1] == 128  # max and mean of 64 channels


def test_unknown_layer_is_named():
  with pytest.raises(Exception, match="penultimate"):
    encoders.resolve_layer("MSD_musicnn", "nope")


def test_short_clips_are_padded_in_records_and_predictions(
  short_clip_dir, tiny_data_dir, encoder_run
):
  config = tiny_encoder_config(short_clip_dir, tiny_data_dir)
  config.data.num_folds = 3
  log_mels = labelled_folders.build(
    short_clip_dir,
    tiny_data_dir,
    audio.FeatureConfig(**config.features),
    num_folds=3,
    pad_seconds=from_config.PATCH_SECONDS,
  )
  short = os.path.join(short_clip_dir, "blues", "blues.short.wav")
  tiny = os.path.join(short_clip_dir, "classical", "classical.short.wav")
  assert labelled_folders.padded_clips(log_mels) == [
    {"path": short, "seconds": 2.0}
  ]
  skipped = labelled_folders.skipped_clips(log_mels)
  assert [s["path"] for s in skipped] == [tiny]
  assert "too short: decodes to 0.30 s < 1.00 s" in skipped[0]["problem"]
  builder, _ = from_config.audio_builder(config)
  rows = {
    r["clip_id"].decode(): r
    for k in range(3)
    for r in tfds.as_numpy(builder.as_dataset(split=f"fold{k}"))
  }
  assert rows["blues/blues.short"]["padded"]
  assert rows["blues/blues.short"]["embedding"].shape == (1, 200)
  assert not rows["blues/blues.00000"]["padded"]
  # Both predicts score the 2.0-s clip, padded, and name the 0.3-s one.
  _, workdir, _ = encoder_run
  for result in (
    prediction.predict(workdir, [short, tiny]),
    prediction.predict_pretrained("MSD_musicnn", [short, tiny]),
  ):
    assert [(p.path, p.padded) for p in result.predictions] == [(short, True)]
    assert [s["path"] for s in result.skipped] == [tiny]
    assert "too short" in result.skipped[0]["problem"]


@pytest.mark.parametrize("method", sorted(registry.METHODS))
def test_every_method_learns_on_embeddings(
  method, tiny_audio_dir, tiny_data_dir, tmp_path
):
  config = tiny_encoder_config(tiny_audio_dir, tiny_data_dir)
  config.method = method
  results = experiments.run(config, str(tmp_path))
  assert results["total_params"] > 0
  if method == "joint":  # One fit of every task: no per-task loss.
    final = results["validation_accuracy_matrix"][-1]
    assert np.mean(final) > 0.5, final  # Two classes per head.
    return
  learnt = [
    (loss, zero)
    for loss, zero in zip(
      results["validation_loss"],
      results["zero_shot_validation_loss"],
      strict=True,
    )
    if loss is not None
  ]
  assert learnt, results["validation_loss"]
  assert all(loss < zero for loss, zero in learnt), learnt


def test_den_on_the_mlp_compiles_each_phase_kind_once(
  gtzan_dir, tiny_data_dir, tmp_path, compilations
):
  # Three of the five genre pairs, 3 clips per genre in 3 folds.
  pairs = gtzan_musicnn.get_config().tasks[:3]
  for genre in (g for pair in pairs for g in pair):
    os.makedirs(tmp_path / "audio" / genre)
    for i in range(3):
      name = f"{genre}.{i:05d}.wav"
      source = os.path.join(gtzan_dir, genre, name)
      os.symlink(source, tmp_path / "audio" / genre / name)
  config = tiny_encoder_config(str(tmp_path / "audio"), tiny_data_dir)
  config.tasks = pairs
  config.data.num_folds = 3
  config.den.tau = 0.0  # Every task expands (its loss is above 0) ...
  config.den.split_top_k = 1  # ... and splits a unit per layer.
  config.den.capacity = 4.0
  jax.clear_caches()
  results = experiments.run(config, str(tmp_path / "run"))
  assert all(r["expanded"] for r in results["task_records"][1:])
  # One trace per phase kind: sparse, head, selective, expand, split.
  assert 1 <= compilations["jit(train_step)"] <= 5, compilations


def test_predict_equals_the_encoder_runs_evaluation(encoder_run):
  config, workdir, results = encoder_run
  data = from_config.build(config)
  params, metadata = run_inspect.load(workdir)
  method = registry.METHODS[config.method].from_config(
    config, tuple(metadata["input_shape"])
  )
  checkpoints = checkpointing.TaskCheckpoints(
    os.path.join(workdir, "checkpoints")
  )
  state = checkpoints.state(1)
  checkpoints.close()
  test = data.builder.as_dataset(split=data.split.test, shuffle_files=False)
  ids = [r["clip_id"].decode() for r in tfds.as_numpy(test)]
  for task in data.tasks:
    names = [i for i in ids if i.split("/")[0] in task.class_names]
    paths = [os.path.join(config.data.source_dir, i + ".wav") for i in names]
    out = prediction.predict(workdir, paths, task=task.index)
    evaluated = scoring.evaluate(
      method.network(params, state, task.index),
      data.eval_batches(task.index, "test"),
    )
    predicted = np.stack(
      [p.scores[f"task{task.index}"].probabilities for p in out.predictions]
    )
    np.testing.assert_allclose(predicted, evaluated.probabilities, atol=1e-5)
    labels = [task.class_names.index(n.split("/")[0]) for n in names]
    assert metrics.accuracy(predicted, np.asarray(labels)) == pytest.approx(
      results["accuracy_matrix"][-1][task.index]
    )


def test_in_memory_streams_are_seeded_and_shaped(encoder_run):
  config, _, _ = encoder_run
  data = from_config.build(config)
  first = next(data.train_batches(0, seed=3))
  again = next(data.train_batches(0, seed=3))
  other = next(data.train_batches(0, seed=4))
  assert first["inputs"].shape == (8, 1, 200)
  np.testing.assert_array_equal(first["inputs"], again["inputs"])
  assert not np.array_equal(first["inputs"], other["inputs"])
  assert set(first["label"].tolist()) <= {0, 1}
  (batch,) = data.eval_batches(0, "validation")
  assert batch["inputs"].shape == (4, 3, 1, 200)
  assert batch["mask"].tolist() == [1.0, 1.0, 0.0, 0.0]  # 2 clips of 4.


def test_the_fine_tuned_trunk_starts_as_the_frozen_encoder():
  pretrained = musicnn_checkpoint.load("MSD_musicnn")
  x = np.random.default_rng(0).random((3, 187, 96), np.float32) * 3
  _, sown = pretrained.model.apply(
    pretrained.variables, x, train=False, mutable=["intermediates"]
  )
  expected = np.asarray(sown["intermediates"]["penultimate"][0])
  model = models.ConvClassifier((), (4,), (2,), encoder=True)
  params = model.init(jax.random.key(0), x)["params"]
  params.update(musicnn_checkpoint.folded(pretrained, encoder_name))
  _, inner = model.apply(
    {"params": params},
    x,
    mutable=["intermediates"],
    capture_intermediates=False,
  )
  dense_input = np.asarray(inner["intermediates"]["dense_0_input"][0])
  embedded = (expected - expected.mean(1, keepdims=True)) / (
    expected.std(1, keepdims=True) + 1e-5
  )
  np.testing.assert_allclose(dense_input, embedded, atol=1e-4)


def test_fine_tuning_the_encoder_lowers_validation_loss(
  tiny_audio_dir, tiny_data_dir, tmp_path
):
  # The musicnn trunk trains about 5x faster compiled at XLA's default
  # level than at the suite's level 0 (conftest): both runs go in a fresh
  # interpreter at the default.
  code = textwrap.dedent(
    f"""
    import json
    from mcl import experiments
    from tests.test_encoders import tiny_encoder_config
    out = {{}}
    for method in ("finetune", "stl"):
      config = tiny_encoder_config({tiny_audio_dir!r}, {tiny_data_dir!r})
      config.method = method
      config.tasks = config.tasks[:1]
      config.model.fine_tune_encoder = True
      config.data.eval_chunks = 1
      config.train.fit.learning_rate = 1e-4
      config.train.fit.max_steps = 2
      config.train.fit.eval_every = 2
      r = experiments.run(config, {str(tmp_path)!r} + "/" + method)
      out[method] = [
        r["total_params"], r["validation_loss"],
        r["zero_shot_validation_loss"],
      ]
    print(json.dumps(out))
    """
  )
  flags = os.environ.get("XLA_FLAGS", "").replace(conftest.O0_FLAG, "")
  child = subprocess.run(
    [sys.executable, "-c", code],
    env={**os.environ, "XLA_FLAGS": flags},
    cwd=forks.ROOT,
    capture_output=True,
    text=True,
    timeout=900,
    check=False,
  )
  assert child.returncode == 0, child.stderr[-3000:]
  out = json.loads(child.stdout.strip().splitlines()[-1])
  assert set(out) == {"finetune", "stl"}
  for method, (params, losses, zero_shot) in out.items():
    assert params > 777_000, method  # The trunk (777,109) is trained.
    pairs = zip(losses, zero_shot, strict=True)
    assert all(loss < zero for loss, zero in pairs), (method, losses)
