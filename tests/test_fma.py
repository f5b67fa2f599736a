"""FMA builder on metadata in FMA's formats and real audio at FMA paths."""

import csv
import dataclasses
import os

import numpy as np
import pytest

from mcl.datasets import fma, fma_metadata, from_config
from mcl.features import audio, track_features
from mcl.runtime import errors
from tests import conftest

FEATURES = dataclasses.replace(fma.FEATURES, n_mels=32)
# track_id, set/split, set/subset, track/genre_top, track/genres, audio:
# a GTZAN excerpt, the real MTAT mp3, or a broken file.
TRACKS = [
  (2, "training", "small", "Hip-Hop", "[21]", "hiphop.00000"),
  (140, "validation", "small", "Rock", "[12, 66]", "rock.00000"),
  (1482, "test", "small", "Pop", "[10, 76]", "pop.00000"),
  (3300, "training", "small", "Rock", "[12]", "mtat"),
  (5001, "training", "medium", "Classical", "[5]", "classical.00000"),
  (5002, "test", "medium", "Blues", "[3]", "blues.00000"),
  (7000, "training", "small", "Hip-Hop", "[21]", "truncated"),
  (7001, "validation", "small", "Pop", "[10]", "empty"),
  (9000, "training", "large", "Jazz", "[4]", "jazz.00000"),
  # No top genre (several genres of different roots): never kept.
  (9001, "training", "medium", "", "[12, 5]", "country.00000"),
]
GENRES = [  # genre_id, #tracks, parent, title, top_level
  (2, 5271, 0, "International", 2),
  (3, 1752, 0, "Blues", 3),
  (4, 4126, 0, "Jazz", 4),
  (5, 4106, 0, "Classical", 5),
  (10, 13845, 0, "Pop", 10),
  (12, 32923, 0, "Rock", 12),
  (21, 8389, 0, "Hip-Hop", 21),
  (66, 6675, 12, "Indie-Rock", 12),
  (76, 1181, 10, "Experimental Pop", 10),
]
NO_FEATURES_ROW = 140


def audio_source(name: str) -> str:
  if name == "mtat":
    return os.path.abspath(conftest.MTAT_CLIP)
  genre = name.split(".")[0]
  return os.path.abspath(os.path.join(conftest.GTZAN, genre, f"{name}.wav"))


def write_tracks(path: str) -> None:
  """Two header rows (group, column), a `track_id` row, csv quoting."""
  columns = [
    ("album", "title"),
    ("artist", "name"),
    ("set", "split"),
    ("set", "subset"),
    ("track", "genre_top"),
    ("track", "genres"),
    ("track", "genres_all"),
    ("track", "title"),
  ]
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow([""] + [group for group, _ in columns])
    writer.writerow([""] + [name for _, name in columns])
    writer.writerow(["track_id"] + [""] * len(columns))
    for track_id, split, subset, genre_top, genres, _ in TRACKS:
      writer.writerow(
        [track_id, "AWOL - A Way Of Life", "Artist, The", split, subset]
        + [genre_top, genres, genres, f"Food, Take {track_id}"]
      )


def feature_values(track_id: int) -> np.ndarray:
  """float32 [518] of a track, distinct per track and per column."""
  rng = np.random.default_rng(track_id)
  return rng.normal(size=len(track_features.columns())).astype(np.float32)


def write_features(path: str, columns: list[tuple[str, str, str]]) -> None:
  """Three header rows (feature, statistics, number), a `track_id` row."""
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    for level, name in enumerate(("feature", "statistics", "number")):
      writer.writerow([name] + [c[level] for c in columns])
    writer.writerow(["track_id"] + [""] * len(columns))
    for track_id, *_ in TRACKS:
      if track_id != NO_FEATURES_ROW:
        values = feature_values(track_id)
        writer.writerow([track_id] + [repr(float(v)) for v in values])


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
  if not (os.path.isdir(conftest.GTZAN) and os.path.exists(conftest.MTAT_CLIP)):
    pytest.skip(f"real audio not found under {conftest.SHARED_DATA}")
  root = tmp_path_factory.mktemp("fma_manual")
  metadata = root / fma_metadata.METADATA_DIR
  metadata.mkdir()
  write_tracks(str(metadata / fma_metadata.TRACKS))
  write_features(
    str(metadata / fma_metadata.FEATURES), track_features.columns()
  )
  with open(metadata / fma_metadata.GENRES, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["genre_id", "#tracks", "parent", "title", "top_level"])
    writer.writerows(GENRES)
  with open(conftest.MTAT_CLIP, "rb") as f:
    head = f.read(2000)
  for track_id, _, subset, *_, source in TRACKS:
    # A folder holds its subset's tracks and those of smaller subsets.
    for folder in fma_metadata.SUBSETS[fma_metadata.SUBSETS.index(subset) :]:
      path = fma_metadata.audio_path(str(root / f"fma_{folder}"), track_id)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      if source == "truncated":
        with open(path, "wb") as f:
          f.write(head[:400] + b"\x00garbage" * 50)
      elif source == "empty":
        open(path, "wb").close()
      else:
        os.symlink(audio_source(source), path)
  return str(root)


@pytest.fixture(scope="module")
def metadata_only_dir(manual_dir, tmp_path_factory):
  """Only `fma_metadata/`: a features build must not need audio."""
  root = tmp_path_factory.mktemp("fma_metadata_only")
  os.symlink(
    os.path.join(manual_dir, fma_metadata.METADATA_DIR),
    root / fma_metadata.METADATA_DIR,
  )
  return str(root)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _read(builder, split):
  return list(builder.as_dataset(split=split).as_numpy_iterator())


def _labels(builder):
  """{split: [(track_id, genre name)]} sorted by track id."""
  names = builder.info.features["label"].names
  labels = {}
  for split in fma.SPLITS:
    tracks = _read(builder, split)
    labels[split] = sorted(
      (int(t["track_id"]), names[t["label"]]) for t in tracks
    )
  return labels


@pytest.fixture(scope="module")
def medium(manual_dir, data_dir):
  config = fma.make_config("medium", FEATURES, waveform=True)
  return fma.build(manual_dir, data_dir, config, num_workers=2)


def test_medium_splits_by_set_split_and_keeps_small_and_medium(medium):
  assert medium.info.features["label"].names == [
    "Blues", "Classical", "Hip-Hop", "Pop", "Rock"
  ]  # fmt: skip
  assert medium.info.metadata["genre_ids"] == [3, 5, 21, 10, 12]
  assert _labels(medium) == {
    "train": [(2, "Hip-Hop"), (3300, "Rock"), (5001, "Classical")],
    "validation": [(140, "Rock")],
    "test": [(1482, "Pop"), (5002, "Blues")],
  }


def test_medium_stores_log_mel_and_waveform_of_the_real_mp3(medium):
  (track,) = [t for t in _read(medium, "train") if t["track_id"] == 3300]
  # Decoded, not header, length: 465,984 samples at 16 kHz.
  assert track["waveform"].shape == (465_984,)
  expected = audio.file_log_mel(conftest.MTAT_CLIP, FEATURES)
  np.testing.assert_allclose(track["log_mel"], expected, atol=1e-4)
  (hiphop,) = [t for t in _read(medium, "train") if t["track_id"] == 2]
  expected = audio.file_log_mel(audio_source("hiphop.00000"), FEATURES)
  np.testing.assert_allclose(hiphop["log_mel"], expected, atol=1e-4)


def test_broken_mp3s_are_skipped_and_listed(medium, manual_dir):
  skipped = {s["track_id"]: s for s in medium.info.metadata["skipped"]}
  assert set(skipped) == {7000, 7001}
  audio_dir = os.path.join(manual_dir, "fma_medium")
  assert skipped[7000]["path"] == os.path.join(audio_dir, "007", "007000.mp3")
  assert skipped[7000]["problem"].startswith(("undecodable", "too short"))
  assert skipped[7001]["problem"] == "file is empty (0 bytes)"
  assert medium.info.metadata["selected"] == {
    "train": 4, "validation": 2, "test": 2
  }  # fmt: skip


def test_features_configs_follow_the_subset_column(metadata_only_dir, data_dir):
  small = fma.build(
    metadata_only_dir, data_dir, fma.make_config("small", precomputed=True)
  )
  medium = fma.build(
    metadata_only_dir, data_dir, fma.make_config("medium", precomputed=True)
  )
  assert small.info.features["label"].names == ["Hip-Hop", "Pop", "Rock"]
  # 5001 and 5002 are medium-only; 140 has no features row.
  assert _labels(small) == {
    "train": [(2, "Hip-Hop"), (3300, "Rock"), (7000, "Hip-Hop")],
    "validation": [(7001, "Pop")],
    "test": [(1482, "Pop")],
  }
  assert _labels(medium)["train"] == [
    (2, "Hip-Hop"), (3300, "Rock"), (5001, "Classical"), (7000, "Hip-Hop")
  ]  # fmt: skip
  assert _labels(medium)["test"] == [(1482, "Pop"), (5002, "Blues")]
  assert medium.info.metadata["skipped"] == [
    {"track_id": NO_FEATURES_ROW, "problem": "no row in features.csv"}
  ]
  # Reused records keep their label names (TFDS restores them from disk).
  again = fma.build(
    metadata_only_dir, data_dir, fma.make_config("medium", precomputed=True)
  )
  assert (
    again.info.features["label"].names == medium.info.features["label"].names
  )
  for split in fma.SPLITS:
    for track in _read(medium, split):
      assert track["features"].shape == (518,)
      assert track["features"].dtype == np.float32
      np.testing.assert_array_equal(
        track["features"], feature_values(int(track["track_id"]))
      )


def test_config_names_differ_with_settings():
  names = {
    fma.make_config("small").name,
    fma.make_config("small", precomputed=True).name,
    fma.make_config("small", FEATURES).name,
    fma.make_config("small", FEATURES, waveform=True).name,
    fma.make_config("medium").name,
  }
  assert len(names) == 5
  assert fma.make_config("small", FEATURES).name == (
    fma.make_config("small", FEATURES).name
  )
  with pytest.raises(ValueError, match="subset"):
    fma.make_config("tiny")


def test_missing_metadata_names_the_folder(tmp_path):
  empty = tmp_path / "manual"
  empty.mkdir()
  with pytest.raises(errors.MissingDataError) as error:
    fma.build(str(empty), str(tmp_path / "tfds"), fma.make_config("small"))
  message = str(error.value)
  assert os.path.join(str(empty), "fma_metadata") in message
  assert os.path.join(str(empty), "fma_small") in message
  assert "fma_metadata.zip" in message and "github.com/mdeff/fma" in message
  (empty / "fma_metadata").mkdir()
  config = fma.make_config("small", precomputed=True)
  with pytest.raises(errors.MissingDataError) as error:
    fma.build(str(empty), str(tmp_path / "tfds"), config)
  message = str(error.value)
  for name in ("tracks.csv", "genres.csv", "features.csv"):
    assert os.path.join(str(empty), "fma_metadata", name) in message
  assert "fma_small" not in message.split(".\n")[0]


def test_features_csv_in_another_column_order_is_an_error(manual_dir, tmp_path):
  root = tmp_path / "manual"
  metadata = root / fma_metadata.METADATA_DIR
  metadata.mkdir(parents=True)
  for name in (fma_metadata.TRACKS, fma_metadata.GENRES):
    os.symlink(
      os.path.join(manual_dir, fma_metadata.METADATA_DIR, name), metadata / name
    )
  columns = track_features.columns()
  columns[0], columns[1] = columns[1], columns[0]
  write_features(str(metadata / fma_metadata.FEATURES), columns)
  config = fma.make_config("small", precomputed=True)
  with pytest.raises(errors.UserError, match="features.csv") as error:
    fma.build(str(root), str(tmp_path / "tfds"), config)
  assert "column 1" in str(error.value)
  assert "('chroma_cens', 'kurtosis', '01')" in str(error.value)


def test_network_on_fmas_features_reads_the_features_config(
  metadata_only_dir, tmp_path
):
  from mcl.configs import fma_feature_dnn
  from mcl.experiments import feature_dnn as track_dnn

  config = fma_feature_dnn.get_config()
  config.data.manual_dir = metadata_only_dir
  config.data.data_dir = str(tmp_path / "tfds")
  config.model.hidden = (8,)
  config.train.batch_size = 2
  config.train.fit.max_steps = 20
  results = track_dnn.run(config, str(tmp_path / "run"))
  # medium_features: 4 train, 1 validation, 2 test tracks (one skipped).
  assert results["clips"] == 7
  assert results["labels"] == ["Blues", "Classical", "Hip-Hop", "Pop", "Rock"]
  assert results["chance"] == 1 / 5
  (figures,) = results["folds"].values()
  assert set(results["folds"]) == {"fma_medium"}
  assert figures["steps"] > 0
  assert results["skipped"] == [
    {"track_id": NO_FEATURES_ROW, "problem": "no row in features.csv"}
  ]


def test_genre_training_on_fma_scores_tracks_from_segments(
  manual_dir, tmp_path
):
  from mcl import experiments
  from mcl.configs import fma_tf_crnn

  config = fma_tf_crnn.get_config()
  config.data.manual_dir = manual_dir
  config.data.data_dir = str(tmp_path / "tfds")
  config.data.num_tags = 5  # The test tables' medium genres.
  config.features.n_mels = FEATURES.n_mels
  config.model.widths.widths = (8, 8, 8, 8)
  config.model.widths.gru_width = 8
  config.input.length = 8_000  # 4 GRU steps instead of 24: a fast test.
  config.train.batch_size = 2
  config.train.eval_batch_size = 2
  config.data.eval_chunks = 3
  config.train.steps_per_epoch = 2
  config.train.max_epochs = 2
  results = experiments.run(config, str(tmp_path / "run"))

  assert results["labels"] == ["Blues", "Classical", "Hip-Hop", "Pop", "Rock"]
  assert results["steps"] == 4 and len(results["history"]) == 2
  # Accuracy over the test split's decoded tracks: a multiple of 1/n.
  n = results["clips"]["test"]
  assert n >= 1
  assert results["test"]["accuracy"] * n == pytest.approx(
    round(results["test"]["accuracy"] * n)
  )
  assert set(results["test"]) == {"loss", "accuracy"}
  with pytest.raises(errors.UserError, match="10 outputs|classes"):
    config.data.num_tags = 10
    experiments.run(config, str(tmp_path / "other"))


def test_continual_runner_reads_fma_genres(manual_dir, tmp_path):
  from mcl.configs import fma_den

  config = fma_den.get_config()
  config.data.manual_dir = manual_dir
  config.data.data_dir = str(tmp_path / "tfds")
  config.features.n_mels = FEATURES.n_mels
  config.tasks = (("Hip-Hop", "Jazz"),)
  with pytest.raises(errors.UserError, match=r"unknown classes \['Jazz'\]"):
    from_config.build(config)
  assert not (tmp_path / "tfds").exists()  # Checked before any record.
  # Hip-Hop is only in train, Rock in train and validation: each class is
  # named with every split it lacks.
  config.tasks = (("Hip-Hop", "Rock"),)
  with pytest.raises(errors.UserError) as info:
    from_config.build(config)
  assert str(info.value).startswith(
    "'Hip-Hop' (task 0) has no validation clip (validation); "
    "'Hip-Hop' (task 0) has no test clip (test); "
    "'Rock' (task 0) has no test clip (test)."
  )
