"""MagnaTagATune builder on the real sample clip and the standard split."""

import dataclasses
import os
import pickle

import numpy as np
import pytest

from mcl.datasets import input_pipeline, magnatagatune, mtat_annotations
from mcl.features import audio
from tests import conftest

SPLIT_DIR = os.path.join(conftest.SHARED_DATA, "mtat_sample", "split")
REAL_PATH = "e/joram-moments_of_clarity-08-solipsism-59-88.mp3"
# 52 tag columns. By frequency: common 3; techno, rock, pop 2; classical
# and tag00..tag45 1; rare 0. The top 50 (ties in file order) thus holds
# neither "rare" (first column) nor "classical" (a tie lost on order).
TAGS = ["rare", *(f"tag{i:02d}" for i in range(46))]
TAGS += ["classical", "techno", "rock", "pop", "common"]
ROWS = [  # clip_id, mp3_path, tags set
  (37386, REAL_PATH, {"techno", "common"}),
  (1, "0/train_clip-0-29.mp3", {"classical", "common"}),
  (2, "c/valid_clip-0-29.mp3", {"rock", "common"}),
  (3, "0/broken-0-29.mp3", {"techno"}),
  (4, "d/missing-0-29.mp3", {"pop"}),
  (5, "1/untagged-0-29.mp3", set()),
  (6, "2/two_genres-0-29.mp3", {"rock", "pop"}),
  (7, "3/filler-0-29.mp3", {f"tag{i:02d}" for i in range(46)}),
]


def write_annotations(path: str) -> None:
  """The documented format: tab-separated, header, double-quoted values."""
  lines = ["\t".join(["clip_id"] + TAGS + ["mp3_path"])]
  for clip_id, mp3_path, tags in ROWS:
    values = [f'"{int(t in tags)}"' for t in TAGS]
    lines.append("\t".join([f'"{clip_id}"'] + values + [f'"{mp3_path}"']))
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
  if not os.path.exists(conftest.MTAT_CLIP):
    pytest.skip(f"real MTAT clip not found at {conftest.MTAT_CLIP}")
  root = tmp_path_factory.mktemp("mtat_manual")
  real = os.path.abspath(conftest.MTAT_CLIP)
  for _, mp3_path, _ in ROWS[:3]:
    os.makedirs(root / "mp3" / os.path.dirname(mp3_path), exist_ok=True)
    os.symlink(real, root / "mp3" / mp3_path)
  with open(real, "rb") as f:
    head = f.read(2000)
  # A truncated mp3 whose bytes are then garbled: undecodable.
  (root / "mp3" / ROWS[3][1]).write_bytes(head[:400] + b"\x00garbage" * 50)
  write_annotations(str(root / mtat_annotations.ANNOTATIONS))
  return str(root)


def _read(builder, split):
  return list(builder.as_dataset(split=split).as_numpy_iterator())


@pytest.fixture(scope="module")
def top50(manual_dir, tmp_path_factory):
  config = magnatagatune.make_config(
    "top50", dataclasses.replace(magnatagatune.FEATURES, n_mels=32),
    waveform=True,
  )  # fmt: skip
  return magnatagatune.build(
    manual_dir, str(tmp_path_factory.mktemp("tfds")), config, num_workers=2
  )


def test_top50_puts_the_real_clip_in_test_with_techno(top50):
  tags = top50.info.metadata["tags"]
  assert len(tags) == 50
  assert tags[:4] == ["common", "techno", "rock", "pop"]
  assert "rare" not in tags and "classical" not in tags
  (clip,) = _read(top50, "test")
  assert clip["mp3_path"].decode() == REAL_PATH
  assert clip["clip_id"] == 37386
  on = {tags[i] for i in np.flatnonzero(clip["tags"])}
  assert on == {"techno", "common"}
  # Decoded, not header, length: 465,984 samples at 16 kHz.
  assert clip["waveform"].shape == (465_984,)
  features = dataclasses.replace(magnatagatune.FEATURES, n_mels=32)
  expected = audio.file_log_mel(conftest.MTAT_CLIP, features)
  np.testing.assert_allclose(clip["log_mel"], expected, atol=1e-4)
  waveform = audio.load_audio(conftest.MTAT_CLIP, 16_000)
  np.testing.assert_allclose(clip["waveform"] / 32767.0, waveform, atol=1e-4)


def test_top50_splits_by_folder_and_skips_broken_clips(top50, manual_dir):
  assert [c["clip_id"] for c in _read(top50, "train")] == [1]
  assert [c["clip_id"] for c in _read(top50, "valid")] == [2]
  skipped = {
    os.path.relpath(s["path"], os.path.join(manual_dir, "mp3")): s["problem"]
    for s in top50.info.metadata["skipped"]
  }
  assert set(skipped) == {ROWS[3][1], ROWS[4][1], ROWS[6][1], ROWS[7][1]}
  assert "does not exist" in skipped[ROWS[4][1]]
  assert skipped[ROWS[3][1]].startswith(("undecodable", "too short"))


def test_genres_keeps_single_label_clips(manual_dir, tmp_path):
  config = magnatagatune.make_config(
    "genres", genres=("techno", "classical", "rock")
  )
  builder = magnatagatune.build(manual_dir, str(tmp_path), config)
  assert builder.info.features["label"].names == ["techno", "classical", "rock"]
  labels = {
    split: [(c["clip_id"], c["label"]) for c in _read(builder, split)]
    for split in ("train", "valid", "test")
  }
  # Clip 6 (rock and pop) is single-label here: pop is not a genre.
  assert labels == {"train": [(1, 1)], "valid": [(2, 2)], "test": [(37386, 0)]}
  assert len(builder.info.metadata["skipped"]) == 2  # broken, missing


def test_rule_split_matches_the_standard_split_files():
  if not os.path.isdir(SPLIT_DIR):
    pytest.skip(f"split files not found at {SPLIT_DIR}")
  valid = np.load(os.path.join(SPLIT_DIR, "valid.npy"))
  test = np.load(os.path.join(SPLIT_DIR, "test.npy"))
  with open(os.path.join(SPLIT_DIR, "train_list_pub.cP"), "rb") as f:
    train = pickle.load(f, encoding="latin1")
  assert (len(train), len(valid), len(test)) == (15_244, 1_529, 4_332)
  for expected, entries in (
    ("valid", [str(e).split("\t")[1] for e in valid]),
    ("test", [str(e).split("\t")[1] for e in test]),
    ("train", [p.replace(".npy", ".mp3") for p in train]),
  ):
    assert {mtat_annotations.split_of(p) for p in entries} == {expected}
  assert f"{17050}\t{REAL_PATH}" in set(map(str, test))


def test_missing_pieces_say_what_to_put_where(manual_dir, tmp_path):
  empty = tmp_path / "manual"
  empty.mkdir()
  config = magnatagatune.make_config("top50")
  with pytest.raises(FileNotFoundError) as error:
    magnatagatune.build(str(empty), str(tmp_path / "tfds"), config)
  message = str(error.value)
  assert os.path.join(str(empty), "annotations_final.csv") in message
  assert os.path.join(str(empty), "mp3") in message
  os.symlink(os.path.join(manual_dir, "mp3"), empty / "mp3")
  with pytest.raises(FileNotFoundError, match="annotations_final.csv"):
    magnatagatune.build(str(empty), str(tmp_path / "tfds"), config)


def test_malformed_annotations_name_file_and_line(tmp_path):
  path = tmp_path / mtat_annotations.ANNOTATIONS
  path.write_text("clip_id\trock\tmp3_path\n1\t1\t0/a.mp3\n2\t7\t0/b.mp3\n")
  with pytest.raises(ValueError, match=f"{path}:3: tag values"):
    mtat_annotations.read_annotations(str(path))


def test_tagging_streams_cut_chunks_of_the_stored_clips(top50):
  stream = input_pipeline.tagging_train_batches(
    top50, "train+test", feature="waveform", chunk_length=59_049,
    batch_size=3, seed=0, shuffle_buffer=4,
  )  # fmt: skip
  batch = next(stream)
  assert batch["inputs"].shape == (3, 59_049)
  assert batch["inputs"].dtype == np.float32
  assert 0.0 < np.abs(batch["inputs"]).max() <= 1.0
  assert batch["tags"].shape == (3, 50)
  assert np.all(batch["tags"][:, 0] == 1)  # Both clips carry "common".

  batches = input_pipeline.tagging_eval_batches(
    top50, "train+valid+test", feature="log_mel", chunk_length=231,
    num_chunks=16, batch_size=2,
  )  # fmt: skip
  for _ in range(2):  # Re-iterable: each pass reads every clip once.
    passes = list(batches)
    assert len(passes) == 2
    assert passes[0]["inputs"].shape == (2, 16, 231, 32)
    mask = np.concatenate([b["mask"] for b in passes])
    assert mask.tolist() == [1, 1, 1, 0]
    assert not passes[1]["inputs"][1].any()
  # The last chunk ends at the clip's last frame.
  (clip,) = _read(top50, "test")
  techno = top50.info.metadata["tags"].index("techno")  # The test clip.
  (batch,) = [b for b in passes if b["tags"][:, techno].any()]
  chunk = batch["inputs"][np.flatnonzero(batch["tags"][:, techno])[0], -1]
  np.testing.assert_array_equal(chunk, clip["log_mel"][-231:])
