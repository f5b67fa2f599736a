import numpy as np
import pytest

from mcl.datasets import input_pipeline, labelled_folders
from mcl.features import audio


@pytest.fixture(scope="module")
def builder(tiny_audio_dir, tiny_data_dir):
  return labelled_folders.build(
    tiny_audio_dir, tiny_data_dir, audio.FeatureConfig(n_mels=32), 5
  )


def test_train_batches_are_task_chunks_and_seeded(builder):
  names = builder.info.features["label"].names
  class_ids = [names.index("pop"), names.index("blues")]
  stream = input_pipeline.train_batches(
    builder,
    "fold0+fold1+fold2",
    class_ids,
    chunk_frames=50,
    batch_size=6,
    seed=3,
  )
  batches = [next(stream) for _ in range(4)]
  for batch in batches:
    assert batch["inputs"].shape == (6, 50, 32)
    assert batch["inputs"].dtype == np.float32
    assert set(batch["label"].tolist()) <= {0, 1}
  labels = np.concatenate([b["label"] for b in batches])
  assert set(labels.tolist()) == {0, 1}

  again = input_pipeline.train_batches(
    builder,
    "fold0+fold1+fold2",
    class_ids,
    chunk_frames=50,
    batch_size=6,
    seed=3,
  )
  other = input_pipeline.train_batches(
    builder,
    "fold0+fold1+fold2",
    class_ids,
    chunk_frames=50,
    batch_size=6,
    seed=4,
  )
  np.testing.assert_array_equal(next(again)["inputs"], batches[0]["inputs"])
  assert not np.array_equal(next(other)["inputs"], batches[0]["inputs"])


def test_eval_batches_cover_every_clip_once(builder):
  names = builder.info.features["label"].names
  class_ids = [names.index("metal"), names.index("classical")]
  batches = input_pipeline.eval_batches(
    builder,
    "fold3+fold4",
    class_ids,
    chunk_frames=40,
    num_chunks=3,
    batch_size=3,
  )
  # Folds 3 and 4 hold one clip per genre each: 4 clips, padded to 6.
  assert len(batches) == 2
  for batch in batches:
    assert batch["inputs"].shape == (3, 3, 40, 32)
  masks = np.concatenate([b["mask"] for b in batches])
  labels = np.concatenate([b["label"] for b in batches])
  assert masks.tolist() == [1, 1, 1, 1, 0, 0]
  assert sorted(labels[masks > 0].tolist()) == [0, 0, 1, 1]


def test_evenly_spaced_chunks_span_the_clip():
  clip = np.arange(100, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
  chunks = input_pipeline.evenly_spaced_chunks(clip, 10, 4).numpy()
  assert chunks.shape == (4, 10, 2)
  assert chunks[:, 0, 0].tolist() == [0, 30, 60, 90]
  short = input_pipeline.evenly_spaced_chunks(clip[:5], 10, 2).numpy()
  assert short.shape == (2, 10, 2)
  assert short[0, 5:].sum() == 0
