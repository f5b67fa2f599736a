"""tf.data pipelines over precomputed log-mel, embedding or waveform records.

Training draws random fixed-length chunks of whole clips (Won et al. 2020);
evaluation takes `num_chunks` evenly spaced chunks of every clip so that the
model's chunk predictions can be averaged per clip. Two kinds of stream:
single-label task streams for continual learning, whose labels are remapped
to the task's own indices 0..n-1 (task-incremental: one head per task), and
multi-label tagging streams ("tags" multi-hot, MagnaTagATune top-50).
Batches leave as numpy dicts; training never calls librosa. With several
processes every process draws the same global batches and keeps its own
rows (`process_rows`), so the streams stay identical across processes.
"""

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

# A continual record's input: a log-mel [frames, mels] or a frozen
# encoder's patch embeddings [patches, D] (`mcl.datasets.encoded_folders`;
# a "chunk" is then one patch's embedding, 1 x D).
INPUT_FEATURES = ("log_mel", "embedding")


def input_feature(builder: tfds.core.DatasetBuilder) -> str:
  """The record feature of `INPUT_FEATURES` that `builder` holds."""
  return next(k for k in INPUT_FEATURES if k in builder.info.features)


def _task_clips(
  builder: tfds.core.DatasetBuilder,
  split: str,
  class_ids: Sequence[int],
) -> tf.data.Dataset:
  """Clips of `split` whose label is in `class_ids`, relabelled.

  The label becomes the position of the clip's class in `class_ids`.
  """
  num_classes = builder.info.features["label"].num_classes
  local = np.full([num_classes], -1, np.int32)
  local[np.asarray(class_ids)] = np.arange(len(class_ids), dtype=np.int32)
  local = tf.constant(local)
  ds = builder.as_dataset(split=split, shuffle_files=False)
  feature = input_feature(builder)
  ds = ds.map(
    lambda ex: {
      "inputs": ex[feature],
      "label": tf.gather(local, tf.cast(ex["label"], tf.int32)),
    }
  )
  return ds.filter(lambda ex: ex["label"] >= 0)


def _pad_to(x: tf.Tensor, length: int) -> tf.Tensor:
  """Pads axis 0 of `x` (frames or samples) at the end to `length`."""
  x = tf.convert_to_tensor(x)
  missing = tf.maximum(length - tf.shape(x)[0], 0)
  return tf.pad(x, [[0, missing]] + [[0, 0]] * (x.shape.rank - 1))


def _random_chunks(
  ds: tf.data.Dataset, key: str, chunk_length: int, seed: int
) -> tf.data.Dataset:
  """Replaces `ex[key]` by a random chunk of it, seeded by (seed, position).

  The chunk start is uniform over the clip (padded to one chunk), so equal
  seeds give equal chunks of an equally ordered stream.
  """

  def random_chunk(index, ex):
    x = _pad_to(ex[key], chunk_length)
    start = tf.random.stateless_uniform(
      [],
      seed=tf.stack([tf.constant(seed, tf.int64), index]),
      maxval=tf.shape(x)[0] - chunk_length + 1,
      dtype=tf.int32,
    )
    return {**ex, key: x[start : start + chunk_length]}

  return ds.enumerate().map(random_chunk, num_parallel_calls=tf.data.AUTOTUNE)


def evenly_spaced_chunks(
  x: tf.Tensor, chunk_length: int, num_chunks: int
) -> tf.Tensor:
  """`num_chunks` chunks whose starts are evenly spaced over the clip.

  Args:
    x: [frames, mels] log-mel or [samples] waveform (padded at the end if
      shorter than one chunk).
    chunk_length: chunk length along axis 0 (frames or samples).
    num_chunks: chunks per clip; the first starts at 0, the last ends at
      the clip's end (chunks overlap when the clip is short).

  Returns:
    [num_chunks, chunk_length, ...].
  """
  x = _pad_to(x, chunk_length)
  last_start = tf.cast(tf.shape(x)[0] - chunk_length, tf.float32)
  starts = tf.cast(tf.round(tf.linspace(0.0, last_start, num_chunks)), tf.int32)
  return tf.gather(x, starts[:, None] + tf.range(chunk_length)[None, :])


def _masked_batches(ds: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
  """Fixed-shape batches; the last is filled with zero examples, mask 0.

  Every batch has the same shape, so the evaluation step compiles once.
  """
  ds = ds.map(lambda ex: {**ex, "mask": tf.constant(1.0)})
  zeros = tf.nest.map_structure(
    lambda spec: tf.zeros(spec.shape, spec.dtype), ds.element_spec
  )
  padding = tf.data.Dataset.from_tensors(zeros).repeat(batch_size - 1)
  return ds.concatenate(padding).batch(batch_size, drop_remainder=True)


def train_batches(
  builder: tfds.core.DatasetBuilder,
  split: str,
  class_ids: Sequence[int],
  *,
  chunk_frames: int,
  batch_size: int,
  seed: int,
) -> Iterator[dict[str, np.ndarray]]:
  """Endless, seeded stream of random-chunk training batches of a task.

  Args:
    builder: a prepared builder with an `INPUT_FEATURES` feature and a
      "label" ClassLabel.
    split: TFDS split expression to draw clips from, e.g. 'fold2+fold3'.
    class_ids: global label ids of the task, in head order.
    chunk_frames: chunk length in frames.
    batch_size: chunks per batch.
    seed: fixes the clip order and the chunk offsets; equal seeds give
      equal streams.

  Returns:
    Iterator of {"inputs": float32 [batch, chunk_frames, mels],
    "label": int32 [batch]} with labels in 0..len(class_ids)-1.

  Raises:
    ValueError: the split holds no clip of the task.
  """
  clips = _task_clips(builder, split, class_ids).cache()
  num_clips = int(clips.reduce(0, lambda n, _: n + 1))
  if num_clips == 0:
    raise ValueError(f"no clips of classes {class_ids} in split {split}")
  ds = clips.shuffle(num_clips, seed=seed, reshuffle_each_iteration=True)
  ds = _random_chunks(ds.repeat(), "inputs", chunk_frames, seed)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return iter(tfds.as_numpy(ds))


def eval_batches(
  builder: tfds.core.DatasetBuilder,
  split: str,
  class_ids: Sequence[int],
  *,
  chunk_frames: int,
  num_chunks: int,
  batch_size: int,
) -> list[dict[str, np.ndarray]]:
  """Whole-clip evaluation batches of a task, fixed shape, fixed order.

  Args:
    builder: a prepared builder with an `INPUT_FEATURES` feature and a
      "label" ClassLabel.
    split: TFDS split expression to evaluate.
    class_ids: global label ids of the task, in head order.
    chunk_frames: chunk length in frames.
    num_chunks: evenly spaced chunks per clip.
    batch_size: clips per batch.

  Returns:
    List of {"inputs": float32 [batch, num_chunks, chunk_frames, mels],
    "label": int32 [batch], "mask": float32 [batch]}; padding clips at the
    end of the last batch have mask 0.

  Raises:
    ValueError: the split holds no clip of the task.
  """
  ds = _task_clips(builder, split, class_ids).map(
    lambda ex: {
      "inputs": evenly_spaced_chunks(ex["inputs"], chunk_frames, num_chunks),
      "label": ex["label"],
    }
  )
  batches = list(tfds.as_numpy(_masked_batches(ds, batch_size)))
  if not batches:
    raise ValueError(f"no clips of classes {class_ids} in split {split}")
  return batches


def _tagged_clips(
  builder: tfds.core.DatasetBuilder,
  split: str,
  feature: str,
  target: str,
  **read,
) -> tf.data.Dataset:
  """{"inputs", target} of every clip; int16 PCM becomes float in [-1, 1]."""

  def inputs(ex):
    x = ex[feature]
    if x.dtype == tf.int16:
      x = tf.cast(x, tf.float32) / 32767.0
    return {"inputs": x, target: ex[target]}

  ds = builder.as_dataset(split=split, **read)
  return ds.map(inputs, num_parallel_calls=tf.data.AUTOTUNE)


def tagging_train_batches(
  builder: tfds.core.DatasetBuilder,
  split: str,
  *,
  feature: str,
  chunk_length: int,
  batch_size: int,
  seed: int,
  shuffle_buffer: int = 1024,
  target: str = "tags",
) -> Iterator[dict[str, np.ndarray]]:
  """Endless stream of random-chunk batches (Won et al. 2020).

  Clips are read with shuffled files and a `shuffle_buffer`-clip buffer
  (MagnaTagATune does not fit in memory) and cut at a random offset.

  Args:
    builder: a prepared builder with the `target` feature.
    split: TFDS split expression, e.g. 'train'.
    feature: "log_mel" (chunk_length in frames) or "waveform" (samples).
    chunk_length: chunk length along the feature's time axis.
    batch_size: chunks per batch.
    seed: seeds file order, shuffling and chunk offsets.
    shuffle_buffer: clips held for shuffling.
    target: "tags" (float32 multi-hot, MagnaTagATune) or "label" (int64,
      a single-label genre dataset such as FMA).

  Returns:
    Iterator of {"inputs": float32 [batch, chunk_length, ...], target:
    float32 [batch, tags] or int64 [batch]}.
  """
  ds = _tagged_clips(
    builder,
    split,
    feature,
    target,
    shuffle_files=True,
    read_config=tfds.ReadConfig(shuffle_seed=seed),
  )
  ds = ds.shuffle(shuffle_buffer, seed=seed).repeat()
  ds = _random_chunks(ds, "inputs", chunk_length, seed)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return iter(tfds.as_numpy(ds))


def tagging_eval_batches(
  builder: tfds.core.DatasetBuilder,
  split: str,
  *,
  feature: str,
  chunk_length: int,
  num_chunks: int,
  batch_size: int,
  target: str = "tags",
) -> Iterable[dict[str, np.ndarray]]:
  """Re-iterable, streamed whole-clip evaluation batches.

  Args:
    builder: a prepared builder with the `target` feature.
    split: TFDS split expression, e.g. 'valid'.
    feature: "log_mel" or "waveform".
    chunk_length: chunk length (frames or samples).
    num_chunks: evenly spaced chunks per clip (16 in Won et al. 2020).
    batch_size: clips per batch.
    target: "tags" or "label", as in `tagging_train_batches`.

  Returns:
    An iterable (each pass re-reads the records, in a fixed order) of
    {"inputs": float32 [batch, num_chunks, chunk_length, ...], target,
    "mask": float32 [batch]}.
  """
  ds = _tagged_clips(builder, split, feature, target, shuffle_files=False)
  ds = ds.map(
    lambda ex: {
      "inputs": evenly_spaced_chunks(ex["inputs"], chunk_length, num_chunks),
      target: ex[target],
    }
  )
  ds = _masked_batches(ds, batch_size).prefetch(tf.data.AUTOTUNE)
  return tfds.as_numpy(ds)


def process_slice(size: int, index: int, count: int) -> slice:
  """Process `index` of `count`'s rows of a global batch of `size` examples.

  Raises:
    ValueError: `size` does not divide over the processes.
  """
  if size % count:
    raise ValueError(
      f"a global batch of {size} examples does not divide over "
      f"{count} processes"
    )
  rows = size // count
  return slice(index * rows, (index + 1) * rows)


def process_rows(
  batches: Iterable[dict[str, np.ndarray]], index: int, count: int
) -> Iterator[dict[str, np.ndarray]]:
  """Process `index` of `count`'s rows (`process_slice`) of every batch.

  Args:
    batches: global batches, the same in every process; every value has
      the examples on axis 0.
    index: this process (`jax.process_index()`).
    count: the processes (`jax.process_count()`).

  Raises:
    ValueError: a batch's size does not divide over the processes.
  """
  for batch in batches:
    rows = process_slice(len(next(iter(batch.values()))), index, count)
    yield {k: v[rows] for k, v in batch.items()}
