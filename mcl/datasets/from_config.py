"""Every config -> data reader: the one place a config meets the data.

The builders (`mcl.datasets.*`), `mcl.datasets.task_data.AudioTaskData`
and `mcl.datasets.permuted_digits` take plain arguments; the functions
here read an experiment config and call them:

- `build(config)`: the continual run's checked `TaskData` of
  `config.data.source` (log-mel or frozen-encoder records of audio, tasks
  from `config.tasks`; permuted images);
- `audio_builder(config)`: the prepared records and split of an audio
  source of the continual runs; `tagging_records(config)`: the zoo's;
- `chunk_frames(config)`, `label_names(config)`: what the continual run,
  the checks and `mcl.predict` read before any record exists.

Chunks are spelt once: `config.data.chunk_seconds` (the continual runs'
chunk, in seconds) and `config.data.eval_chunks` (evenly spaced chunks per
evaluation clip); the zoo's model input length is its `config.input`.
"""

import dataclasses
import math
from collections.abc import Callable, Sequence

import ml_collections
import numpy as np

from mcl.datasets import (
  clip_memory,
  encoded_folders,
  fma,
  labelled_folders,
  magnatagatune,
  permuted_digits,
  task_data,
  tasks,
)
from mcl.features import audio, logmel
from mcl.runtime import errors

# A musicnn patch (187 frames at hop 256, 16 kHz) rounded up to whole
# seconds: a clip padded to it makes at least one patch.
PATCH_SECONDS = 3.0


def audio_builder(config: ml_collections.ConfigDict):
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
      pad_seconds=pad_seconds(config),
    )
    if encoder(config) != "none":
      builder = encoded_folders.build(
        builder,
        config.data.data_dir,
        encoder(config),
        config.data.encoder_layer,
        config.data.patch_hop_seconds,
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


def fine_tunes_encoder(config: ml_collections.ConfigDict) -> bool:
  """`model.fine_tune_encoder`: `data.encoder`'s trunk is trained end to
  end on the patch log-mels (the records stay log-mels)."""
  return bool(config.get("model", {}).get("fine_tune_encoder", False))


def encoder(config: ml_collections.ConfigDict) -> str:
  """`data.encoder`: a frozen encoder of `mcl.models.encoders.ENCODERS`
  whose patch embeddings are the records, or "none" (log-mel records,
  also when the encoder is fine-tuned)."""
  if fine_tunes_encoder(config):
    return "none"
  return config.data.get("encoder", "none")


def pad_seconds(config: ml_collections.ConfigDict) -> float:
  """The length in seconds a shorter clip is zero-padded to when its
  records are built: one encoder patch (3 s) or one `data.chunk_seconds`."""
  if encoder(config) != "none" or fine_tunes_encoder(config):
    return PATCH_SECONDS
  return float(config.data.chunk_seconds)


def chunk_frames(config: ml_collections.ConfigDict) -> int:
  """Training/evaluation chunk length in frames (`data.chunk_seconds` at
  the features' sample rate in Hz and hop length in samples); 1 (one
  patch's embedding) for encoder records, a 187-frame patch when the
  encoder is fine-tuned."""
  if encoder(config) != "none":
    return 1
  if fine_tunes_encoder(config):
    return logmel.MUSICNN_PATCH_FRAMES
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


def check_chunk_length(
  task_list: Sequence[tasks.Task],
  clips: dict[str, task_data.SplitClips],
  config: ml_collections.ConfigDict,
) -> None:
  """No clip of the tasks' classes is shorter than a chunk, and at most
  half of them were zero-padded to one when their records were built.

  A shorter clip would be zero-padded into every chunk drawn from it, and
  a chunk longer than most clips trains and tests on padding.

  Args:
    task_list: the tasks.
    clips: {"train" | "validation" | "test": its `SplitClips`}.
    config: reads `data.chunk_seconds` and `features` (frames per second:
      `sample_rate / hop_length`).

  Raises:
    mcl.runtime.errors.UserError: `data.chunk_seconds` is above the length of
      some clip; the message names the shortest clips with their lengths (s);
      or above that of more than half the clips, padded to it.
  """
  wanted = {label for task in task_list for label in task.class_ids}
  padded = sorted(
    name
    for split in clips.values()
    if split.padded is not None
    for label, pad, name in zip(
      split.labels, split.padded, split.names, strict=True
    )
    if label in wanted and pad
  )
  total = sum(np.isin(c.labels, list(wanted)).sum() for c in clips.values())
  if 2 * len(padded) > total:
    raise errors.UserError(
      f"data.chunk_seconds={config.data.chunk_seconds!r}: longer than "
      f"{len(padded)} of the tasks' {total} clips ({', '.join(padded[:3])}"
      ", ...), which were zero-padded to it; a chunk must fit most clips"
    )
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


@dataclasses.dataclass(frozen=True)
class TaggingRecords:
  """The single-task zoo's records (`mcl.experiments.tagging`).

  Attributes:
    builder: the prepared TFDS builder.
    splits: (train, validation, test) split names.
    target: the batch key of the targets: "tags" (multi-hot) or "label".
    names: tag or class names, in output order.
  """

  builder: object
  splits: tuple[str, str, str]
  target: str
  names: list[str]


def tagging_records(config: ml_collections.ConfigDict) -> TaggingRecords:
  """The records of `config.data.source` for `config.input`, built once.

  "magnatagatune": the `top50` tagging benchmark (Won et al. 2020), tags
  of `config.data.num_tags`; "fma": FMA's top genres of
  `config.data.subset`, single-label (Kim & Nam 2019), in the dataset's
  own split. Waveform records when `config.input.feature` is "waveform".

  Raises:
    mcl.runtime.errors.MissingDataError: the manual download is incomplete.
    mcl.runtime.errors.UserError: an unknown source.
  """
  features = audio.FeatureConfig(**config.features)
  waveform = config.input.feature == "waveform"
  if config.data.source == "magnatagatune":
    builder = magnatagatune.build(
      config.data.manual_dir,
      config.data.data_dir,
      magnatagatune.make_config(
        "top50", features, waveform=waveform, num_tags=config.data.num_tags
      ),
    )
    tags = list(builder.info.metadata["tags"])
    return TaggingRecords(builder, ("train", "valid", "test"), "tags", tags)
  if config.data.source == "fma":
    builder = fma.build(
      config.data.manual_dir,
      config.data.data_dir,
      fma.make_config(config.data.subset, features, waveform=waveform),
    )
    names = list(builder.info.features["label"].names)
    return TaggingRecords(builder, fma.SPLITS, "label", names)
  raise errors.UserError(
    f"unknown source {config.data.source!r}; known: magnatagatune, fma"
  )


def audio_task_data(config: ml_collections.ConfigDict) -> task_data.TaskData:
  """Checks the tasks, builds (or loads) the records of `config.data`
  (`audio_builder`) and checks every class's clips (`check_classes`) and
  their lengths (`check_chunk_length`).

  Raises:
    mcl.runtime.errors.UserError: a bad task or data setting, found before
      any record is built (`tasks.make_tasks`), or a class without clips
      in a split or a clip shorter than a chunk (after).
  """
  labels = label_names(config)
  task_list = tasks.make_tasks(tasks.task_groups(config), labels)
  builder, split = audio_builder(config)
  built = builder.info.features["label"].names
  if built != labels:
    raise errors.UserError(
      f"{builder.data_dir}: records built for labels {built}, the "
      f"source now has {labels}; delete that folder to rebuild"
    )
  split_names = dataclasses.asdict(split)
  clips = {k: task_data.split_clips(builder, v) for k, v in split_names.items()}
  task_data.check_classes(
    task_list,
    {k: c.class_counts(len(built)) for k, c in clips.items()},
    split_names,
    config.data.allow_empty_classes,
  )
  check_chunk_length(task_list, clips, config)
  if encoder(config) != "none":
    return clip_memory.ClipTaskData(
      builder,
      split,
      task_list,
      batch_size=config.train.batch_size,
      eval_batch_size=config.train.eval_batch_size,
      eval_chunks=config.data.eval_chunks,
    )
  return task_data.AudioTaskData(
    builder,
    split,
    task_list,
    frames=chunk_frames(config),
    num_mels=config.features.n_mels,
    batch_size=config.train.batch_size,
    eval_batch_size=config.train.eval_batch_size,
    eval_chunks=config.data.eval_chunks,
  )


def _permuted(config, pixels: int, load) -> permuted_digits.PermutedImages:
  # The permutations first: they check num_tasks before a download.
  order = permuted_digits.permutations(
    config.data.num_tasks, pixels, config.data.permutation_seed
  )
  return permuted_digits.PermutedImages(
    load(), order, config.train.batch_size, config.train.eval_batch_size
  )


def permuted_digit_data(config: ml_collections.ConfigDict):
  """Permuted 8x8 digits of `config.data` (`num_tasks`, `permutation_seed`,
  `split_seed`, `validation_fraction`, `test_fraction`) and `config.train`
  batch sizes.

  Raises:
    ValueError: a bad setting (num_tasks < 1, fractions, batch sizes).
  """
  return _permuted(
    config,
    8 * 8,
    lambda: permuted_digits.load_digits(
      config.data.validation_fraction,
      config.data.test_fraction,
      config.data.split_seed,
    ),
  )


def permuted_mnist_data(config: ml_collections.ConfigDict):
  """Permuted MNIST: as `permuted_digit_data`, 28x28 images from TFDS
  `mnist` in `config.data.data_dir` (downloaded there on first use).

  Raises:
    ValueError: a bad setting (num_tasks < 1, batch sizes).
  """
  return _permuted(
    config, 28 * 28, lambda: permuted_digits.load_mnist(config.data.data_dir)
  )


def _arrays(config):
  raise errors.UserError(
    'data.source="arrays": pass the arrays as data= to mcl.experiments.run '
    "(mcl.datasets.arrays.from_arrays)"
  )


# config.data.source -> the TaskData it builds from the config.
SOURCES: dict[
  str, Callable[[ml_collections.ConfigDict], task_data.TaskData]
] = {
  "labelled_folders": audio_task_data,
  "magnatagatune": audio_task_data,
  "fma": audio_task_data,
  "permuted_digits": permuted_digit_data,
  "mnist": permuted_mnist_data,
  "arrays": _arrays,
}


def build(config: ml_collections.ConfigDict) -> task_data.TaskData:
  """The task data of `config.data.source` (see the module docstring).

  Raises:
    mcl.runtime.errors.UserError: unknown source (the message lists the
      known ones), or a bad data or task setting of that source.
  """
  if config.data.source not in SOURCES:
    raise errors.UserError(
      f"unknown data source {config.data.source!r}; known: {sorted(SOURCES)}"
    )
  return SOURCES[config.data.source](config)
