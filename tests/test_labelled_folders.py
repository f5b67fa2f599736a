import collections
import os

import numpy as np
import pytest
import soundfile
import tensorflow_datasets as tfds

from mcl.datasets import labelled_folders
from mcl.features import audio
from tests import test_audio

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


def test_damaged_float_wavs_are_named_skips(gtzan_dir, tmp_path):
  root = tmp_path / "audio"
  for genre in ("disco", "reggae"):
    os.makedirs(root / genre)
    for i in range(2):
      name = f"{genre}.{i:05d}.wav"
      os.symlink(os.path.join(gtzan_dir, genre, name), root / genre / name)
  damaged = test_audio.write_damaged_float_wavs(gtzan_dir, str(root / "disco"))

  builder = labelled_folders.build(
    str(root), str(tmp_path / "tfds"), FEATURES, num_folds=2
  )

  skipped = {
    s["path"]: s["problem"] for s in labelled_folders.skipped_clips(builder)
  }
  assert set(skipped) == {str(root / "disco" / name) for name in damaged}
  for name, problem in test_audio.DAMAGED_FLOAT_WAVS.items():
    assert skipped[str(root / "disco" / name)].startswith(problem)
  examples = [
    ex
    for k in range(2)
    for ex in tfds.as_numpy(builder.as_dataset(split=f"fold{k}"))
  ]
  assert sorted(ex["clip_id"].decode() for ex in examples) == [
    "disco/disco.00000",
    "disco/disco.00001",
    "reggae/reggae.00000",
    "reggae/reggae.00001",
  ]
  assert all(np.all(np.isfinite(ex["log_mel"])) for ex in examples)


def _write_excerpt(gtzan_dir, clip, path, seconds=4.0):
  """The first `seconds` of GTZAN `clip` ("genre.000nn") as a WAV."""
  genre = clip.split(".")[0]
  samples, rate = soundfile.read(
    os.path.join(gtzan_dir, genre, clip + ".wav"),
    dtype="int16",
    frames=int(seconds * 22_050),
  )
  soundfile.write(path, samples, rate, subtype="PCM_16")


def _records(builder):
  """{clip_id: log_mel} of every fold."""
  return {
    ex["clip_id"].decode(): ex["log_mel"]
    for k in range(builder.builder_config.num_folds)
    for ex in tfds.as_numpy(builder.as_dataset(split=f"fold{k}"))
  }


def test_changed_folder_is_rebuilt_never_read_stale(gtzan_dir, tmp_path):
  root, data_dir = tmp_path / "audio", str(tmp_path / "tfds")
  for genre in ("blues", "jazz"):
    os.makedirs(root / genre)
    for i in range(3):
      clip = f"{genre}.{i:05d}"
      _write_excerpt(gtzan_dir, clip, root / genre / f"{clip}.wav")

  def build():
    builder = labelled_folders.build(str(root), data_dir, FEATURES, 2)
    return builder.builder_config.name, _records(builder)

  def wanted():
    return {
      f"{genre}/{os.path.splitext(name)[0]}"
      for genre in ("blues", "jazz")
      for name in os.listdir(root / genre)
    }

  first, records = build()
  assert set(records) == wanted() and len(records) == 6
  assert build()[0] == first  # Unchanged: the same records.

  os.remove(root / "jazz" / "jazz.00002.wav")
  removed, records = build()
  assert set(records) == wanted() and len(records) == 5
  assert "jazz/jazz.00002" not in records
  assert removed != first

  # A clip linked in from elsewhere (the scan follows the link).
  os.symlink(
    os.path.join(gtzan_dir, "jazz", "jazz.00007.wav"),
    root / "jazz" / "jazz.00007.wav",
  )
  added, records = build()
  assert set(records) == wanted() and len(records) == 6
  assert added not in (first, removed)

  # Rewritten in place with other music of the same length: same name,
  # same size, only the modification time differs.
  replaced = root / "blues" / "blues.00001.wav"
  size = os.path.getsize(replaced)
  _write_excerpt(gtzan_dir, "blues.00008", replaced)
  assert os.path.getsize(replaced) == size
  rewritten, records = build()
  assert set(records) == wanted() and len(records) == 6
  np.testing.assert_array_equal(
    records["blues/blues.00001"], audio.file_log_mel(str(replaced), FEATURES)
  )
  assert rewritten not in (first, removed, added)


def test_fingerprint_follows_links_and_covers_every_file(gtzan_dir, tmp_path):
  root = tmp_path / "audio"
  os.makedirs(root / "blues")
  link = root / "blues" / "a.wav"
  os.symlink(os.path.join(gtzan_dir, "blues", "blues.00000.wav"), link)
  before = labelled_folders.fingerprint(labelled_folders.scan(str(root)))
  assert before == labelled_folders.fingerprint(
    labelled_folders.scan(str(root))
  )
  # Re-linked to another clip: the link itself has the same name.
  os.remove(link)
  os.symlink(os.path.join(gtzan_dir, "blues", "blues.00001.wav"), link)
  relinked = labelled_folders.fingerprint(labelled_folders.scan(str(root)))
  assert relinked != before
  # An ignored file is in the build report, so it counts too.
  (root / "blues" / "notes.txt").write_text("not audio")
  noted = labelled_folders.fingerprint(labelled_folders.scan(str(root)))
  assert noted not in (before, relinked)


def test_a_build_finished_by_another_process_is_read(
  gtzan_dir, tmp_path, monkeypatch
):
  root, data_dir = tmp_path / "audio", str(tmp_path / "tfds")
  for genre in ("blues", "jazz"):
    os.makedirs(root / genre)
    for i in range(2):
      clip = f"{genre}.{i:05d}"
      _write_excerpt(gtzan_dir, clip, root / genre / f"{clip}.wav")
  (root / "notes.txt").write_text("not in a label folder")
  first = labelled_folders.build(str(root), data_dir, FEATURES, 2)

  def lost_the_race(self, *args, **kwargs):
    # What the second of two concurrent builds meets: the first one's
    # records were renamed into place before its own.
    raise FileExistsError(self.data_dir)

  monkeypatch.setattr(
    labelled_folders.LabelledFolders, "download_and_prepare", lost_the_race
  )
  again = labelled_folders.build(str(root), data_dir, FEATURES, 2)
  assert again.builder_config.name == first.builder_config.name
  assert set(_records(again)) == set(_records(first))
  assert len(_records(again)) == 4
  assert labelled_folders.skipped_clips(again) == [
    {"path": str(root / "notes.txt"), "problem": "not in a <label>/ folder"}
  ]
