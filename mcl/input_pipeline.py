"""tf.data pipelines over precomputed log-mel records.

Training draws random fixed-length chunks of whole clips (Won et al. 2020);
evaluation takes `num_chunks` evenly spaced chunks of every clip so that the
model's chunk predictions can be averaged per clip. Labels are remapped to
the task's own indices 0..n-1 (task-incremental: one head per task).
Batches leave as numpy dicts; training never calls librosa.
"""

from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds


def split_expression(folds: Sequence[int]) -> str:
  """TFDS split expression for a set of folds, e.g. 'fold1+fold3'."""
  if not folds:
    raise ValueError("at least one fold is needed")
  return "+".join(f"fold{k}" for k in sorted(folds))


def _task_clips(
  builder: tfds.core.DatasetBuilder,
  folds: Sequence[int],
  class_ids: Sequence[int],
) -> tf.data.Dataset:
  """Clips of the given folds whose label is in `class_ids`, relabelled.

  The label becomes the position of the clip's class in `class_ids`.
  """
  num_classes = builder.info.features["label"].num_classes
  local = np.full([num_classes], -1, np.int32)
  local[np.asarray(class_ids)] = np.arange(len(class_ids), dtype=np.int32)
  local = tf.constant(local)
  ds = builder.as_dataset(split=split_expression(folds), shuffle_files=False)
  ds = ds.map(
    lambda ex: {
      "log_mel": ex["log_mel"],
      "label": tf.gather(local, tf.cast(ex["label"], tf.int32)),
    }
  )
  return ds.filter(lambda ex: ex["label"] >= 0)


def _pad_frames(log_mel: tf.Tensor, chunk_frames: int) -> tf.Tensor:
  """Pads a [frames, mels] clip at the end to at least `chunk_frames`."""
  missing = tf.maximum(chunk_frames - tf.shape(log_mel)[0], 0)
  return tf.pad(log_mel, [[0, missing], [0, 0]])


def train_batches(
  builder: tfds.core.DatasetBuilder,
  folds: Sequence[int],
  class_ids: Sequence[int],
  *,
  chunk_frames: int,
  batch_size: int,
  seed: int,
) -> Iterator[dict[str, np.ndarray]]:
  """Endless, seeded stream of random-chunk training batches.

  Args:
    builder: a prepared `LabelledFolders` builder.
    folds: folds to draw clips from.
    class_ids: global label ids of the task, in head order.
    chunk_frames: chunk length in frames.
    batch_size: chunks per batch.
    seed: fixes the clip order and the chunk offsets; equal seeds give
      equal streams.

  Returns:
    Iterator of {"log_mel": float32 [batch, chunk_frames, mels],
    "label": int32 [batch]} with labels in 0..len(class_ids)-1.

  Raises:
    ValueError: the folds hold no clip of the task.
  """
  clips = _task_clips(builder, folds, class_ids).cache()
  num_clips = int(clips.reduce(0, lambda n, _: n + 1))
  if num_clips == 0:
    raise ValueError(f"no clips of classes {class_ids} in folds {folds}")
  ds = clips.shuffle(num_clips, seed=seed, reshuffle_each_iteration=True)
  ds = ds.repeat().enumerate()

  def random_chunk(index, ex):
    log_mel = _pad_frames(ex["log_mel"], chunk_frames)
    max_start = tf.shape(log_mel)[0] - chunk_frames + 1
    start = tf.random.stateless_uniform(
      [],
      seed=tf.stack([tf.constant(seed, tf.int64), index]),
      maxval=max_start,
      dtype=tf.int32,
    )
    return {
      "log_mel": log_mel[start : start + chunk_frames],
      "label": ex["label"],
    }

  ds = ds.map(random_chunk, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return iter(tfds.as_numpy(ds))


def evenly_spaced_chunks(
  log_mel: tf.Tensor, chunk_frames: int, num_chunks: int
) -> tf.Tensor:
  """`num_chunks` chunks whose starts are evenly spaced over the clip.

  Args:
    log_mel: [frames, mels] clip (padded if shorter than one chunk).
    chunk_frames: chunk length in frames.
    num_chunks: chunks per clip; the first starts at frame 0, the last ends
      at the clip's last frame (chunks overlap when the clip is short).

  Returns:
    [num_chunks, chunk_frames, mels].
  """
  log_mel = _pad_frames(log_mel, chunk_frames)
  last_start = tf.cast(tf.shape(log_mel)[0] - chunk_frames, tf.float32)
  starts = tf.cast(tf.round(tf.linspace(0.0, last_start, num_chunks)), tf.int32)
  index = starts[:, None] + tf.range(chunk_frames)[None, :]
  return tf.gather(log_mel, index)


def eval_batches(
  builder: tfds.core.DatasetBuilder,
  folds: Sequence[int],
  class_ids: Sequence[int],
  *,
  chunk_frames: int,
  num_chunks: int,
  batch_size: int,
) -> list[dict[str, np.ndarray]]:
  """Whole-clip evaluation batches of fixed shape, in a fixed order.

  The last batch is padded with zero clips whose `mask` is 0, so that every
  batch has the same shape and the evaluation step compiles once.

  Args:
    builder: a prepared `LabelledFolders` builder.
    folds: folds to evaluate.
    class_ids: global label ids of the task, in head order.
    chunk_frames: chunk length in frames.
    num_chunks: evenly spaced chunks per clip.
    batch_size: clips per batch.

  Returns:
    List of {"log_mel": float32 [batch, num_chunks, chunk_frames, mels],
    "label": int32 [batch], "mask": float32 [batch]}.

  Raises:
    ValueError: the folds hold no clip of the task.
  """
  ds = _task_clips(builder, folds, class_ids).map(
    lambda ex: {
      "log_mel": evenly_spaced_chunks(ex["log_mel"], chunk_frames, num_chunks),
      "label": ex["label"],
      "mask": tf.constant(1.0),
    }
  )
  batches = list(tfds.as_numpy(ds.batch(batch_size)))
  if not batches:
    raise ValueError(f"no clips of classes {class_ids} in folds {folds}")
  last = batches[-1]
  missing = batch_size - last["label"].shape[0]
  batches[-1] = {
    k: np.concatenate([v, np.zeros((missing,) + v.shape[1:], v.dtype)])
    for k, v in last.items()
  }
  return batches
