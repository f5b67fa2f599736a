"""The continual runner's data: the prepared builder, its split, chunks.

`config.data.source` names the dataset: "labelled_folders" (GTZAN layout,
split in folds) or "magnatagatune" (the `genres` selection of the manual
download, standard folder split).
"""

import ml_collections

from mcl import audio, tasks
from mcl.datasets import labelled_folders, magnatagatune


def build_dataset(config: ml_collections.ConfigDict):
  """The prepared builder named by `config.data` and its data split.

  Args:
    config: an experiment config; labelled folders read `data.source_dir`,
      `num_folds` and `fold` (test fold; validation the next), MagnaTagATune
      `data.manual_dir` and `genres`; both `data.data_dir` and `features`.

  Returns:
    (builder, `tasks.DataSplit`); the builder has "log_mel" and a "label"
    ClassLabel.

  Raises:
    ValueError: unknown source (and see the builders' `build`).
    FileNotFoundError: an incomplete MagnaTagATune manual directory.
  """
  features = audio.FeatureConfig(**config.features)
  if config.data.source == "labelled_folders":
    builder = labelled_folders.build(
      config.data.source_dir,
      config.data.data_dir,
      features,
      num_folds=config.data.num_folds,
    )
    return builder, tasks.fold_split(config.data.fold, config.data.num_folds)
  if config.data.source == "magnatagatune":
    builder = magnatagatune.build(
      config.data.manual_dir,
      config.data.data_dir,
      magnatagatune.make_config("genres", features, genres=config.data.genres),
    )
    return builder, tasks.STANDARD_SPLIT
  raise ValueError(
    f"unknown data source {config.data.source!r}; known: "
    "['labelled_folders', 'magnatagatune']"
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
