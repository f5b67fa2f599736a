"""The feature baseline's data from a config: FMA's 518 track features
(`mcl.experiments.feature_dnn`), of a labelled folder or FMA's own table.
"""

import ml_collections
import numpy as np

from mcl.datasets import fma, tasks, track_table


def _track_table_splits(config):
  """Labels, clip count, skipped files and {"fold<f>": splits}."""
  table = track_table.build(
    config.data.source_dir, config.data.data_dir, config.data.num_folds
  )
  splits = {}
  for f in config.data.test_folds:
    split = tasks.fold_split(int(f), config.data.num_folds)
    splits[f"fold{f}"] = tuple(
      table.split(_folds(e))
      for e in (split.train, split.validation, split.test)
    )
  return table.label_names, len(table.labels), table.skipped, splits


def _fma_feature_splits(config):
  """Labels, track count, skipped tracks and {"fma_<subset>": splits}."""
  builder = fma.build(
    config.data.manual_dir,
    config.data.data_dir,
    fma.make_config(config.data.subset, precomputed=True),
  )
  arrays = []
  for split in fma.SPLITS:
    rows = list(builder.as_dataset(split=split).as_numpy_iterator())
    arrays.append(
      (
        np.stack([r["features"] for r in rows]).astype(np.float32),
        np.asarray([r["label"] for r in rows], np.int32),
      )
    )
  labels = builder.info.features["label"].names
  clips = sum(len(y) for _, y in arrays)
  skipped = list(builder.info.metadata.get("skipped", []))
  return labels, clips, skipped, {f"fma_{config.data.subset}": tuple(arrays)}


def _folds(expression: str) -> list[int]:
  """'fold2+fold3' -> [2, 3]."""
  return [int(part[len("fold") :]) for part in expression.split("+")]


def track_feature_splits(config: ml_collections.ConfigDict):
  """The feature baseline's data (`mcl.experiments.feature_dnn`): FMA's
  518 track features of `config.data.source`.

  "labelled_folders": the features of a `<label>/<clip>` folder
  (`mcl.datasets.track_table`, cached), one split per test fold of
  `config.data.test_folds` (validation the next fold); "fma": FMA's own
  precomputed features in the dataset's split.

  Returns:
    (labels, clip count, skipped clips, {split name: ((x, y) train,
    validation, test)}), x float32 [clips, 518], y int32 [clips].

  Raises:
    mcl.runtime.errors.UserError: a bad data setting (missing folder).
    mcl.runtime.errors.MissingDataError: FMA's metadata is not in place.
  """
  if config.data.source == "fma":
    return _fma_feature_splits(config)
  return _track_table_splits(config)
