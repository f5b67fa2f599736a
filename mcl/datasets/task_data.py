"""The continual runner's data: a task sequence and its batches.

`build(config)` returns the `TaskData` named by `config.data.source`:

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
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from mcl.datasets import (
  fma,
  input_pipeline,
  labelled_folders,
  magnatagatune,
  permuted_digits,
  tasks,
)
from mcl.features import audio
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


def build_dataset(config: ml_collections.ConfigDict):
  """The prepared audio builder named by `config.data` and its data split.

  Args:
    config: an experiment config; labelled folders read `data.source_dir`,
      `num_folds` and `fold` (test fold; validation the next), MagnaTagATune
      `data.manual_dir` and `genres`, FMA `data.manual_dir` and `subset`;
      all `data.data_dir` and `features`.

  Returns:
    (builder, `tasks.DataSplit`); the builder has "log_mel" and a "label"
    ClassLabel.

  Raises:
    ValueError: not an audio source (and see the builders' `build`).
    mcl.runtime.errors.MissingDataError: an incomplete MagnaTagATune or FMA
      manual directory.
  """
  features = audio.FeatureConfig(**config.features)
  if config.data.source == "labelled_folders":
    split = tasks.fold_split(config.data.fold, config.data.num_folds)
    builder = labelled_folders.build(
      config.data.source_dir,
      config.data.data_dir,
      features,
      num_folds=config.data.num_folds,
    )
    return builder, split
  if config.data.source == "magnatagatune":
    builder = magnatagatune.build(
      config.data.manual_dir,
      config.data.data_dir,
      magnatagatune.make_config("genres", features, genres=config.data.genres),
    )
    return builder, tasks.STANDARD_SPLIT
  if config.data.source == "fma":
    builder = fma.build(
      config.data.manual_dir,
      config.data.data_dir,
      fma.make_config(config.data.subset, features),
    )
    return builder, tasks.DataSplit(*fma.SPLITS)
  raise ValueError(
    f"unknown audio source {config.data.source!r}; known: "
    "['labelled_folders', 'magnatagatune', 'fma']"
  )


def chunk_frames(config: ml_collections.ConfigDict) -> int:
  """Training/evaluation chunk length in frames (`data.chunk_seconds` at
  the features' sample rate in Hz and hop length in samples)."""
  return int(
    round(
      config.data.chunk_seconds
      * config.features.sample_rate
      / config.features.hop_length
    )
  )


def label_names(config: ml_collections.ConfigDict) -> list[str]:
  """The audio source's label names, known before any record is built.

  Labelled folders: the `<label>/` sub-folders holding audio (sorted);
  MagnaTagATune: `config.data.genres`; FMA: the subset's top genres.

  Raises:
    mcl.runtime.errors.UserError: the folder is missing or holds no audio.
  """
  if config.data.source == "labelled_folders":
    return labelled_folders.scan(config.data.source_dir).labels
  if config.data.source == "fma":
    return fma.label_names(config.data.manual_dir, config.data.subset)
  return list(config.data.genres)


# The record feature that names a clip: labelled folders, MagnaTagATune,
# FMA.
CLIP_NAMES = ("clip_id", "mp3_path", "track_id")


@dataclasses.dataclass(frozen=True)
class SplitClips:
  """What the checks before training read of a split's clips.

  Attributes:
    labels: int [clips], label ids.
    frames: int [clips], log-mel frames of each clip.
    names: the clips' names (`CLIP_NAMES`), for messages.
  """

  labels: np.ndarray
  frames: np.ndarray
  names: list[str]

  def class_counts(self, num_labels: int) -> np.ndarray:
    """int [num_labels]: clips of each label."""
    return np.bincount(self.labels, minlength=num_labels)


def split_clips(builder, split: str) -> SplitClips:
  """Label, length and name of every record of a TFDS split expression,
  in one pass (the log-mels are parsed, not decoded to numpy)."""
  features = builder.info.features
  name = next(key for key in CLIP_NAMES if key in features)
  ds = builder.as_dataset(
    split=split, decoders={"log_mel": tfds.decode.SkipDecoding()}
  )
  ds = ds.map(lambda ex: (ex["label"], tf.shape(ex["log_mel"])[0], ex[name]))
  rows = list(tfds.as_numpy(ds))
  return SplitClips(
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


def check_chunk_length(
  task_list: Sequence[tasks.Task],
  clips: dict[str, SplitClips],
  config: ml_collections.ConfigDict,
) -> None:
  """No clip of the tasks' classes is shorter than a chunk.

  A shorter clip is zero-padded into every chunk drawn from it, so a
  chunk longer than most clips trains and tests on padding.

  Args:
    task_list: the tasks.
    clips: {"train" | "validation" | "test": its `SplitClips`}.
    config: reads `data.chunk_seconds` and `features` (frames per second:
      `sample_rate / hop_length`).

  Raises:
    mcl.runtime.errors.UserError: `data.chunk_seconds` is above the length of
      some clip; the message names the shortest clips with their lengths (s).
  """
  wanted = {label for task in task_list for label in task.class_ids}
  lengths = [
    (int(frames), name)
    for split in clips.values()
    for label, frames, name in zip(
      split.labels, split.frames, split.names, strict=True
    )
    if label in wanted
  ]
  chunk = chunk_frames(config)
  short = sorted(length for length in lengths if length[0] < chunk)
  if not short:
    return
  per_second = config.features.sample_rate / config.features.hop_length

  def seconds(frames: int) -> str:  # Rounded down: a chunk that long fits.
    return f"{math.floor(frames / per_second * 100) / 100:g}"

  named = ", ".join(f"{name} ({seconds(f)} s)" for f, name in short[:5])
  raise errors.UserError(
    f"data.chunk_seconds={config.data.chunk_seconds!r}: longer than "
    f"{len(short)} of the tasks' {len(lengths)} clips, the shortest "
    f"{named}; must be <= {seconds(short[0][0])} s (the shortest clip)"
  )


class AudioTaskData:
  """`TaskData` of a prepared log-mel builder: random-chunk training,
  evenly spaced evaluation chunks (`mcl.datasets.input_pipeline`).

  Attributes:
    builder: the prepared TFDS builder.
    split: its train/validation/test split expressions.
    frames: chunk length in frames.
  """

  def __init__(self, config: ml_collections.ConfigDict):
    """Checks the tasks, builds (or loads) the records of `config.data`
    (see `build_dataset`) and checks every class's clips
    (`check_classes`) and their lengths (`check_chunk_length`).

    Raises:
      mcl.runtime.errors.UserError: a bad task or data setting, found before any
        record is built (`tasks.make_tasks`), or a class without clips in
        a split or a clip shorter than a chunk (after).
    """
    labels = label_names(config)
    self.tasks = tasks.make_tasks(config.tasks, labels)
    self.builder, self.split = build_dataset(config)
    built = self.builder.info.features["label"].names
    if built != labels:
      raise errors.UserError(
        f"{self.builder.data_dir}: records built for labels {built}, the "
        f"source now has {labels}; delete that folder to rebuild"
      )
    split_names = dataclasses.asdict(self.split)
    clips = {k: split_clips(self.builder, v) for k, v in split_names.items()}
    check_classes(
      self.tasks,
      {k: c.class_counts(len(built)) for k, c in clips.items()},
      split_names,
      config.data.allow_empty_classes,
    )
    check_chunk_length(self.tasks, clips, config)
    self.frames = chunk_frames(config)
    self.input_shape = (1, self.frames, config.features.n_mels)
    self._batch_size = config.train.batch_size
    self._eval_batch_size = config.train.eval_batch_size
    self._eval_chunks = config.data.eval_chunks

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


# config.data.source -> the TaskData it builds from the config.
SOURCES: dict[str, Callable[[ml_collections.ConfigDict], TaskData]] = {
  "labelled_folders": AudioTaskData,
  "magnatagatune": AudioTaskData,
  "fma": AudioTaskData,
  "permuted_digits": permuted_digits.permuted_digits,
  "mnist": permuted_digits.permuted_mnist,
}


def build(config: ml_collections.ConfigDict) -> TaskData:
  """The task data of `config.data.source` (see the module docstring).

  Raises:
    ValueError: unknown source (the message lists the known ones), or a
      bad data or task setting of that source.
  """
  if config.data.source not in SOURCES:
    raise errors.UserError(
      f"unknown data source {config.data.source!r}; known: {sorted(SOURCES)}"
    )
  return SOURCES[config.data.source](config)
