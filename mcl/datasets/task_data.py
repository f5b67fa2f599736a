"""The continual runner's data: a task sequence and its batches.

A `TaskData` is what the runner reads; `mcl.datasets.from_config.build`
returns the one named by `config.data.source`:

- "labelled_folders": GTZAN layout, split in folds; tasks from
  `config.tasks` (groups of genre names);
- "magnatagatune": the `genres` selection of the manual download, standard
  folder split; tasks from `config.tasks`;
- "fma": FMA's top genres of `config.data.subset` (`mcl.datasets.fma`),
  the dataset's own split; tasks from `config.tasks`;
- "permuted_digits": scikit-learn's 8x8 digits, one fixed pixel
  permutation per task (`mcl.datasets.permuted_digits`);
- "mnist": the same benchmark on TFDS `mnist` (28x28).

Every source yields the same batch layouts, with the input under "inputs"
(the key the trainer, replay and EWC read; an image is a [rows, columns]
"frames x bins" array): training batches {"inputs": float32 [B, H, W],
"label": int32 [B]} with task-local labels, and evaluation batches
{"inputs": float32 [clips, chunks, H, W], "label": int32 [clips], "mask":
float32 [clips]} (an image is a clip of one chunk).
"""

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from mcl.datasets import (
  input_pipeline,
  tasks,
)
from mcl.runtime import errors

# Split names of `TaskData.eval_batches`.
SPLITS = ("train", "validation", "test")


class TaskData(Protocol):
  """A task sequence's data, as the continual runner uses it.

  Attributes:
    tasks: the task sequence, in order.
    input_shape: shape of one input batch, (1, H, W): (1, frames, mels)
      for audio chunks, (1, rows, columns) for images.
  """

  tasks: Sequence[tasks.Task]
  input_shape: tuple[int, int, int]

  def train_batches(
    self, task: int, seed: int
  ) -> Iterator[dict[str, np.ndarray]]:
    """Endless stream of task `task`'s training batches.

    Args:
      task: task index.
      seed: fixes the stream; equal seeds give equal streams.

    Returns:
      Iterator of {"inputs": float32 [B, H, W], "label": int32 [B]}, the
      label the class's position in the task (its head's output).
    """
    ...

  def eval_batches(
    self, task: int, split: str, num_chunks: int | None = None
  ) -> Sequence[dict[str, np.ndarray]]:
    """Fixed-order, fixed-shape evaluation batches of a task's clips.

    Args:
      task: task index.
      split: one of `SPLITS`.
      num_chunks: evenly spaced chunks per clip; None: the source's
        default (always 1 for images).

    Returns:
      Batches {"inputs": float32 [clips, chunks, H, W], "label": int32
      [clips], "mask": float32 [clips]}; padding clips have mask 0.

    Raises:
      ValueError: unknown split.
    """
    ...

  def joint_batches(self, seed: int) -> Iterator[dict[str, np.ndarray]]:
    """Endless stream drawn uniformly from every task's training data.

    Returns:
      Iterator of {"inputs": float32 [B, H, W], "label": int32 [B] (within
      the task), "task": int32 [B]}.
    """
    ...


def with_task(batches, task: int) -> Iterator[dict[str, np.ndarray]]:
  """Each batch with "task": int32 [B] filled with `task` (its head)."""
  for batch in batches:
    yield {**batch, "task": np.full(batch["label"].shape, task, np.int32)}


def check_split(split: str) -> None:
  """Raises ValueError unless `split` is one of `SPLITS`."""
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; known: {list(SPLITS)}")


# The record feature that names a clip: labelled folders, MagnaTagATune,
# FMA.
CLIP_NAMES = ("clip_id", "mp3_path", "track_id")


@dataclasses.dataclass(frozen=True)
class SplitClips:
  """What the checks before training read of a split's clips.

  Attributes:
    labels: int [clips], label ids.
    frames: int [clips], log-mel frames (or patches) of each clip.
    names: the clips' names (`CLIP_NAMES`), for messages.
    padded: bool [clips], stored zero-padded to one chunk (None: the
      records pad nothing).
  """

  labels: np.ndarray
  frames: np.ndarray
  names: list[str]
  padded: np.ndarray | None = None

  def class_counts(self, num_labels: int) -> np.ndarray:
    """int [num_labels]: clips of each label."""
    return np.bincount(self.labels, minlength=num_labels)


def split_clips(builder, split: str) -> SplitClips:
  """Label, length and name of every record of a TFDS split expression,
  in one pass (the log-mels are parsed, not decoded to numpy)."""
  features = builder.info.features
  name = next(key for key in CLIP_NAMES if key in features)
  feature = input_pipeline.input_feature(builder)
  ds = builder.as_dataset(
    split=split, decoders={feature: tfds.decode.SkipDecoding()}
  )
  has_padded = "padded" in features
  ds = ds.map(
    lambda ex: (
      ex["label"],
      tf.shape(ex[feature])[0],
      ex[name],
      ex["padded"] if has_padded else False,
    )
  )
  rows = list(tfds.as_numpy(ds))
  return SplitClips(
    padded=np.asarray([r[3] for r in rows], bool) if has_padded else None,
    labels=np.asarray([r[0] for r in rows], np.int64),
    frames=np.asarray([r[1] for r in rows], np.int64),
    names=[
      r[2].decode() if isinstance(r[2], bytes) else str(r[2]) for r in rows
    ],
  )


def check_classes(
  task_list: Sequence[tasks.Task],
  counts: dict[str, np.ndarray],
  split_names: dict[str, str],
  allow_empty: bool,
) -> None:
  """Every class of every task has a clip in every split.

  A class without training clips is never learnt; one without validation
  or test clips leaves its scores undefined (ROC-AUC None, accuracy over
  the other class only).

  Args:
    task_list: the tasks.
    counts: {"train" | "validation" | "test": int [num_labels]}.
    split_names: the same keys -> the split expression (for the message).
    allow_empty: log a warning instead of raising.

  Raises:
    mcl.runtime.errors.UserError: some class has no clip in some split (each is
      named with its task and split), unless `allow_empty`.
  """
  empty = [
    f"'{name}' (task {task.index}) has no {split} clip ({split_names[split]})"
    for task in task_list
    for name, label in zip(task.class_names, task.class_ids, strict=True)
    for split in ("train", "validation", "test")
    if counts[split][label] == 0
  ]
  if not empty:
    return
  message = "; ".join(empty)
  if allow_empty:
    logging.warning("Empty classes, run goes on as asked: %s", message)
    return
  raise errors.UserError(
    f"{message}. Add clips or change config.tasks; "
    "--config.data.allow_empty_classes=True runs anyway"
  )


class AudioTaskData:
  """`TaskData` of a prepared log-mel builder: random-chunk training,
  evenly spaced evaluation chunks (`mcl.datasets.input_pipeline`).

  Attributes:
    builder: the prepared TFDS builder.
    split: its train/validation/test split expressions.
    frames: chunk length in frames.
  """

  def __init__(
    self,
    builder,
    split: tasks.DataSplit,
    task_list: Sequence[tasks.Task],
    frames: int,
    num_mels: int,
    batch_size: int,
    eval_batch_size: int,
    eval_chunks: int,
  ):
    """Args: the prepared builder (its "label" ClassLabel the tasks'
    class ids) and its split; the tasks; the chunk length (frames) and
    mel bands of an input; the training and evaluation batch sizes
    (chunks, clips); the evenly spaced chunks per evaluation clip.
    `mcl.datasets.from_config.audio_task_data` builds one from a config,
    after its checks."""
    self.builder, self.split, self.tasks = builder, split, list(task_list)
    self.frames = frames
    self.input_shape = (1, frames, num_mels)
    self._batch_size = batch_size
    self._eval_batch_size = eval_batch_size
    self._eval_chunks = eval_chunks

  def train_batches(self, task, seed):
    return input_pipeline.train_batches(
      self.builder,
      self.split.train,
      self.tasks[task].class_ids,
      chunk_frames=self.frames,
      batch_size=self._batch_size,
      seed=seed,
    )

  def eval_batches(self, task, split, num_chunks=None):
    check_split(split)
    return input_pipeline.eval_batches(
      self.builder,
      dataclasses.asdict(self.split)[split],
      self.tasks[task].class_ids,
      chunk_frames=self.frames,
      num_chunks=num_chunks or self._eval_chunks,
      batch_size=self._eval_batch_size,
    )

  def joint_batches(self, seed):
    task_of = np.concatenate(
      [np.full(t.num_classes, t.index) for t in self.tasks]
    )
    local = np.concatenate([np.arange(t.num_classes) for t in self.tasks])
    stream = input_pipeline.train_batches(
      self.builder,
      self.split.train,
      [c for t in self.tasks for c in t.class_ids],
      chunk_frames=self.frames,
      batch_size=self._batch_size,
      seed=seed,
    )
    for batch in stream:
      yield {
        "inputs": batch["inputs"],
        "label": local[batch["label"]].astype(np.int32),
        "task": task_of[batch["label"]].astype(np.int32),
      }
