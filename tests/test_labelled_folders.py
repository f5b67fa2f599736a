import collections
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mcl import audio
from mcl.datasets import labelled_folders

FEATURES = audio.FeatureConfig(n_mels=32)


@pytest.fixture
def folder_with_bad_files(gtzan_dir, tmp_path):
  root = tmp_path / "audio"
  for genre in ("disco", "reggae"):
    os.makedirs(root / genre)
    for i in range(3):
      name = f"{genre}.{i:05d}.wav"
      os.symlink(os.path.join(gtzan_dir, genre, name), root / genre / name)
  (root / "disco" / "empty.wav").write_bytes(b"")
  (root / "reggae" / "corrupt.mp3").write_bytes(os.urandom(3000))
  (root / "reggae" / "notes.txt").write_text("not audio")
  (root / "README.txt").write_text("not in a label folder")
  os.makedirs(root / "disco" / "extra")
  os.symlink(
    os.path.join(gtzan_dir, "disco", "disco.00009.wav"),
    root / "disco" / "extra" / "nested.wav",
  )
  return str(root)


def test_bad_files_are_skipped_and_reported(folder_with_bad_files, tmp_path):
  builder = labelled_folders.build(
    folder_with_bad_files, str(tmp_path / "tfds"), FEATURES, num_folds=2
  )
  skipped = {
    os.path.basename(s["path"]): s["problem"]
    for s in labelled_folders.skipped_clips(builder)
  }
  assert set(skipped) == {
    "empty.wav",
    "corrupt.mp3",
    "notes.txt",
    "README.txt",
    "nested.wav",
  }
  assert "empty" in skipped["empty.wav"]
  assert "undecodable" in skipped["corrupt.mp3"]
  assert "unsupported extension '.txt'" in skipped["notes.txt"]
  assert "not in a <label>/ folder" in skipped["README.txt"]
  assert "sub-folder of disco/" in skipped["nested.wav"]
  assert builder.info.splits.total_num_examples == 6

  # The report survives a reload from disk, and the records are reused:
  # a rebuild that had to featurise anything would fail here.
  original = audio.file_log_mel
  audio.file_log_mel = None
  try:
    again = labelled_folders.build(
      folder_with_bad_files, str(tmp_path / "tfds"), FEATURES, num_folds=2
    )
  finally:
    audio.file_log_mel = original
  assert len(labelled_folders.skipped_clips(again)) == 5
  assert again.info.splits.total_num_examples == 6


def test_folds_partition_the_clips_stratified(tiny_audio_dir, tiny_data_dir):
  builder = labelled_folders.build(
    tiny_audio_dir, tiny_data_dir, FEATURES, num_folds=5
  )
  clips = labelled_folders.scan(tiny_audio_dir).clips
  seen = collections.Counter()
  per_fold_labels = {}
  for k in range(5):
    examples = list(tfds.as_numpy(builder.as_dataset(split=f"fold{k}")))
    assert all(ex["fold"] == k for ex in examples)
    seen.update(ex["clip_id"].decode() for ex in examples)
    per_fold_labels[k] = sorted(int(ex["label"]) for ex in examples)
  expected = {
    os.path.splitext(os.path.relpath(p, tiny_audio_dir))[0]
    for paths in clips.values()
    for p in paths
  }
  assert set(seen) == expected
  assert all(count == 1 for count in seen.values())
  # Five clips per genre, five folds: one clip of every genre per fold.
  assert all(labels == [0, 1, 2, 3] for labels in per_fold_labels.values())


def test_assign_folds_ignores_decoding_failures():
  clips = {"a": ["a/1", "a/2", "a/3"], "b": ["b/1", "b/2"]}
  folds = labelled_folders.assign_folds(clips, 2)
  assert folds == {"a/1": 0, "a/2": 1, "a/3": 0, "b/1": 0, "b/2": 1}


def test_log_mel_records_match_direct_features(tiny_audio_dir, tiny_data_dir):
  builder = labelled_folders.build(
    tiny_audio_dir, tiny_data_dir, FEATURES, num_folds=5
  )
  example = next(iter(tfds.as_numpy(builder.as_dataset(split="fold0"))))
  path = os.path.join(tiny_audio_dir, example["clip_id"].decode() + ".wav")
  np.testing.assert_array_equal(
    example["log_mel"], audio.file_log_mel(path, FEATURES)
  )


def test_missing_folder_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="does not exist"):
    labelled_folders.build(str(tmp_path / "nope"), str(tmp_path))
