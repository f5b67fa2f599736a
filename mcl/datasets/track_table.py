"""FMA's 518 track features (`mcl.features.track_features`) of a labelled
folder.

Every clip of a `<label>/<clip>` folder (`labelled_folders.scan`, the same
stratified folds as the log-mel records, `labelled_folders.assign_folds`)
is decoded at its native rate and summarised into the 518 features, in
parallel spawn-started processes (TensorFlow's threads make fork unsafe)
with a progress bar. The table is cached in `<data_dir>/track_features/`
under a name that hashes the folder, the fold count and the feature
columns, so a second call reads it back. Clips that fail are skipped and
listed, as in the log-mel build report.
"""

import dataclasses
import hashlib
import json
import os

import numpy as np
import soundfile
from absl import logging

from mcl.datasets import extraction, labelled_folders
from mcl.features import audio, track_features

# 2: chroma CQT/CENS with 12 bins per octave (version 1 misread the CQT).
_VERSION = 2


@dataclasses.dataclass(frozen=True)
class TrackTable:
  """The features of a folder's clips.

  Attributes:
    features: float32 [clips, 518], `track_features.columns()` order.
    labels: int32 [clips], positions in `label_names`.
    folds: int32 [clips].
    label_names: the folder's labels (sorted sub-folder names).
    skipped: [{"path", "problem"}] of files without features.
  """

  features: np.ndarray
  labels: np.ndarray
  folds: np.ndarray
  label_names: list[str]
  skipped: list[dict[str, str]]

  def split(self, folds) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) of the clips in `folds`."""
    keep = np.isin(self.folds, list(folds))
    return self.features[keep], self.labels[keep]


def _featurise(path: str) -> tuple[np.ndarray | None, str | None]:
  """Worker: (features, None) or (None, problem)."""
  try:
    rate = soundfile.info(path).samplerate
  except (soundfile.LibsndfileError, RuntimeError) as e:
    return None, f"undecodable ({e.__class__.__name__})"
  try:
    waveform = audio.load_audio(path, rate)
    # The log-mel builds' rules: at least 3 s, not digital silence.
    audio.check_audio(path, waveform, audio.FeatureConfig(sample_rate=rate))
  except audio.AudioError as e:
    return None, e.problem
  values = track_features.track_features(waveform, rate)
  if not np.all(np.isfinite(values)):
    # Kurtosis and skew of a constant row: silence or a constant signal.
    return None, "non-finite features (silent or constant audio)"
  return values, None


def build(
  source_dir: str, data_dir: str, num_folds: int = 5, num_workers=None
) -> TrackTable:
  """The table of a labelled folder, computed once and cached.

  Args:
    source_dir: root of `<label>/<clip>` audio.
    data_dir: where `track_features/<name>.npz` is kept.
    num_folds: folds of the clips (as the log-mel records).
    num_workers: feature processes (default: all cores).

  Returns:
    The table.

  Raises:
    mcl.runtime.errors.UserError: the folder is missing or holds no audio.
  """
  source_dir = os.path.abspath(source_dir)
  folder = labelled_folders.scan(source_dir)
  key = json.dumps([source_dir, num_folds, _VERSION, track_features.columns()])
  digest = hashlib.sha1(key.encode()).hexdigest()[:10]
  path = os.path.join(
    data_dir,
    "track_features",
    f"{os.path.basename(source_dir).lower()}_{digest}.npz",
  )
  if os.path.exists(path):
    with np.load(path, allow_pickle=False) as cached:
      return TrackTable(
        cached["features"],
        cached["labels"],
        cached["folds"],
        list(cached["label_names"]),
        json.loads(str(cached["skipped"])),
      )
  folds = labelled_folders.assign_folds(folder.clips, num_folds)
  paths = [p for clips in folder.clips.values() for p in clips]
  label_of = {
    p: i for i, clips in enumerate(folder.clips.values()) for p in clips
  }
  rows, skipped = [], list(folder.ignored)
  for i, (values, problem) in extraction.parallel_map(
    _featurise, paths, num_workers, "features"
  ):
    p = paths[i]
    if problem:
      logging.warning("Skipping clip: %s: %s", p, problem)
      skipped.append({"path": p, "problem": problem})
    else:
      rows.append((values, label_of[p], folds[p]))
  table = TrackTable(
    np.stack([r[0] for r in rows]).astype(np.float32),
    np.asarray([r[1] for r in rows], np.int32),
    np.asarray([r[2] for r in rows], np.int32),
    folder.labels,
    skipped,
  )
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp.npz"
  np.savez(
    tmp,
    features=table.features,
    labels=table.labels,
    folds=table.folds,
    label_names=np.asarray(table.label_names),
    skipped=json.dumps(table.skipped),
  )
  os.replace(tmp, path)  # A killed build never leaves half a table.
  return table
