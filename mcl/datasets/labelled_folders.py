"""TFDS builder for a folder of labelled audio: `<root>/<label>/<clip>.<ext>`.

This is the GTZAN layout. Each clip is decoded once, turned into a log-mel
spectrogram (`mcl.features.audio`) and stored with its label and clip id. Clips
are assigned to folds deterministically, stratified by label: within a label the
clips are sorted by file name and clip r goes to fold r % num_folds. A clip
is never split across folds, and a clip that fails to decode keeps the fold
numbering of the others unchanged. Each fold is a TFDS split `fold<k>`.

Every file of the folder that does not become a record is in the build
report (the dataset's `metadata.json`, and the log) with the reason: an
extension libsndfile does not decode, a file outside any `<label>/` folder
or in a sub-folder of one, or an `mcl.features.audio.AudioError` (undecodable,
too short, digital silence, a NaN, infinite or absurdly loud sample,
non-finite features). A clip shorter than `pad_seconds` (one training
chunk or encoder patch) but not than `features.min_seconds` is zero-padded
to it, stored with `padded` True and listed in the report's "padded".

The records are named by the folder's path, its content (every file's
path, size and modification time, `fingerprint`) and the parameters: a
folder whose clips were added, removed or replaced gets a new build,
never the old records.
"""

import dataclasses
import hashlib
import json
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from mcl.features import audio
from mcl.runtime import errors

# 1.1.0: the build report lists every file that is not a record.
# 1.2.0: the name's digest covers the folder's content (1.1.0 records of a
# folder changed since were read stale), and clips with non-finite or
# absurdly loud samples are skipped (1.1.0 stored NaN log-mels).
# 1.3.0: clips shorter than a chunk are zero-padded and marked "padded".
_VERSION = tfds.core.Version("1.3.0")


@dataclasses.dataclass(eq=False)
class LabelledFoldersConfig(tfds.core.BuilderConfig):
  """Which folder to read and how to featurise it.

  Attributes:
    source_dir: root folder with one sub-folder of audio files per label.
    features: log-mel front-end parameters.
    num_folds: number of clip folds (splits `fold0` .. `fold<num_folds-1>`).
    pad_seconds: shorter clips are zero-padded to this length in seconds
      (`audio.load_clip`); 0 pads nothing.
  """

  source_dir: str = ""
  features: audio.FeatureConfig = audio.FeatureConfig()
  num_folds: int = 5
  pad_seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class Folder:
  """What a `<label>/<clip>` folder holds.

  Attributes:
    source_dir: the folder, as given to `scan`; the paths below start
      with it.
    clips: {label: [path, ...]}, both sorted, for every sub-folder with at
      least one file of an extension in `mcl.features.audio.AUDIO_EXTENSIONS`.
    ignored: [{"path", "problem"}] of every other file, sorted by path.
  """

  source_dir: str
  clips: dict[str, list[str]]
  ignored: list[dict[str, str]]

  @property
  def labels(self) -> list[str]:
    """Label names in label-id order (sorted folder names)."""
    return list(self.clips)


def _ignored(path: str, problem: str) -> dict[str, str]:
  return {"path": path, "problem": problem}


def scan(source_dir: str) -> Folder:
  """Lists the clips of a folder and every file that is not one, with why.

  Hidden files (a leading ".") are skipped without a word.

  Args:
    source_dir: root of `<label>/<clip>` audio.

  Returns:
    The folder's clips and ignored files.

  Raises:
    mcl.runtime.errors.UserError: the folder does not exist, or no sub-folder
      holds audio.
  """
  if not os.path.isdir(source_dir):
    raise errors.UserError(
      f"{source_dir}: audio folder does not exist; point "
      "--config.data.source_dir at a <label>/<clip> folder of audio "
      "(README, Data)"
    )
  clips, ignored = {}, []
  for label in sorted(os.listdir(source_dir)):
    folder = os.path.join(source_dir, label)
    if label.startswith("."):
      continue
    if not os.path.isdir(folder):
      ignored.append(_ignored(folder, "not in a <label>/ folder"))
      continue
    paths = []
    for root, dirs, files in os.walk(folder):
      dirs[:] = sorted(d for d in dirs if not d.startswith("."))
      for name in sorted(f for f in files if not f.startswith(".")):
        path = os.path.join(root, name)
        extension = os.path.splitext(name)[1].lower()
        if root != folder:
          problem = f"in a sub-folder of {label}/ (clips sit in {label}/)"
          ignored.append(_ignored(path, problem))
        elif extension not in audio.AUDIO_EXTENSIONS:
          ignored.append(
            _ignored(
              path,
              f"unsupported extension {extension or '(none)'!r}; audio is "
              + " ".join(audio.AUDIO_EXTENSIONS),
            )
          )
        else:
          paths.append(path)
    if paths:
      clips[label] = sorted(paths)
  if not clips:
    raise errors.UserError(
      f"{source_dir}: no <label>/<clip> audio found "
      f"(extensions {' '.join(audio.AUDIO_EXTENSIONS)})"
    )
  return Folder(source_dir, clips, sorted(ignored, key=lambda e: e["path"]))


def fingerprint(folder: Folder) -> str:
  """A digest of the folder's content as the scan found it.

  Covers every clip and ignored file: its path relative to the folder,
  its real path, size (bytes) and modification time (ns), through symlinks
  (`os.stat`). Adding, removing, renaming, rewriting or re-linking a file
  changes it; reading does not. A file gone since the scan is absent.

  Args:
    folder: from `scan`.

  Returns:
    40 hex digits (SHA-1).
  """
  paths = [p for ps in folder.clips.values() for p in ps]
  paths += [e["path"] for e in folder.ignored]
  entries = []
  for path in sorted(paths):
    try:
      stat = os.stat(path)
      size, mtime = stat.st_size, stat.st_mtime_ns
    except OSError:
      size = mtime = None  # Reported when decoded (or a broken link).
    entries.append(
      [
        os.path.relpath(path, folder.source_dir),
        os.path.realpath(path),
        size,
        mtime,
      ]
    )
  return hashlib.sha1(json.dumps(entries).encode()).hexdigest()


def make_config(
  folder: Folder,
  features: audio.FeatureConfig,
  num_folds: int,
  pad_seconds: float = 0.0,
) -> LabelledFoldersConfig:
  """A builder config whose name identifies the source and all parameters.

  Two builds of the same folder (path and `fingerprint`) with the same
  parameters get the same name and so share their records; any change,
  of a clip or a parameter, gives a new name and a fresh build.

  Args:
    folder: the scanned `<label>/<clip>` folder.
    features: log-mel parameters.
    num_folds: number of folds, at least 2.
    pad_seconds: shorter clips are zero-padded to this length (seconds).

  Returns:
    The builder config.

  Raises:
    mcl.runtime.errors.UserError: `num_folds` < 2.
  """
  source_dir = os.path.abspath(folder.source_dir)
  if num_folds < 2:
    raise errors.UserError(f"num_folds must be at least 2, got {num_folds}")
  key = json.dumps(
    [
      source_dir,
      fingerprint(folder),
      dataclasses.asdict(features),
      num_folds,
      pad_seconds,
    ],
    sort_keys=True,
  )
  digest = hashlib.sha1(key.encode()).hexdigest()[:10]
  stem = "".join(
    c if c.isalnum() else "_" for c in os.path.basename(source_dir).lower()
  )
  return LabelledFoldersConfig(
    name=f"{stem}_{digest}",
    version=_VERSION,
    source_dir=source_dir,
    features=features,
    num_folds=num_folds,
    pad_seconds=pad_seconds,
  )


def assign_folds(clips: dict[str, list[str]], num_folds: int) -> dict[str, int]:
  """Stratified, deterministic fold of every clip of {label: sorted
  paths} (`Folder.clips`): {path: rank within its label % num_folds}."""
  return {
    path: rank % num_folds
    for paths in clips.values()
    for rank, path in enumerate(paths)
  }


class LabelledFolders(tfds.core.GeneratorBasedBuilder):
  """Log-mel spectrograms of a `<label>/<clip>` audio folder, in folds."""

  VERSION = _VERSION
  BUILDER_CONFIGS = []

  def __init__(
    self,
    *,
    config: LabelledFoldersConfig,
    folder: Folder | None = None,
    **kwargs,
  ):
    """The builder of one config.

    Args:
      config: from `make_config`.
      folder: the scan the config was made from (None: scan
        `config.source_dir` now, e.g. to read finished records).
      **kwargs: `tfds.core.GeneratorBasedBuilder`'s (`data_dir`).
    """
    folder = folder or scan(config.source_dir)
    self._clips = folder.clips
    self._skipped = list(folder.ignored)
    self._padded = []
    super().__init__(config=config, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    n_mels = self.builder_config.features.n_mels
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "log_mel": tfds.features.Tensor(
            shape=(None, n_mels), dtype=np.float32
          ),
          "label": tfds.features.ClassLabel(names=list(self._clips)),
          "clip_id": tfds.features.Text(),
          "fold": np.int32,
          "padded": np.bool_,
        }
      ),
      metadata=tfds.core.MetadataDict(),
      description=f"Log-mel clips of {self.builder_config.source_dir}.",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Local files only.
    folds = assign_folds(self._clips, self.builder_config.num_folds)
    self.info.metadata["skipped"] = self._skipped
    self.info.metadata["padded"] = self._padded
    return {
      f"fold{k}": self._generate_examples(
        [p for p, f in folds.items() if f == k], k
      )
      for k in range(self.builder_config.num_folds)
    }

  def _generate_examples(self, paths: list[str], fold: int):
    config = self.builder_config
    for path in paths:
      try:
        clip = audio.load_clip(path, config.features, config.pad_seconds)
        features = audio.clip_features(path, clip.waveform, config.features)
      except audio.AudioError as e:
        logging.warning("Skipping clip: %s", e)
        self._skipped.append({"path": e.path, "problem": e.problem})
        continue
      if clip.padded:
        logging.info("Padding clip %s (%.2f s)", path, clip.seconds)
        self._padded.append({"path": path, "seconds": round(clip.seconds, 3)})
      clip_id = os.path.splitext(os.path.relpath(path, config.source_dir))[0]
      label = os.path.basename(os.path.dirname(path))
      yield (
        clip_id,
        {
          "log_mel": features,
          "label": label,
          "clip_id": clip_id,
          "fold": fold,
          "padded": clip.padded,
        },
      )


def build(
  source_dir: str,
  data_dir: str,
  features: audio.FeatureConfig | None = None,
  num_folds: int = 5,
  pad_seconds: float = 0.0,
) -> LabelledFolders:
  """Builds (or reuses) the records of a labelled audio folder.

  Records are reused only for the same folder content and parameters
  (`make_config`); a changed folder is built afresh under a new name.

  Args:
    source_dir: root of `<label>/<clip>` audio.
    data_dir: TFDS data directory where the records are written.
    features: log-mel parameters (default `audio.FeatureConfig()`).
    num_folds: number of clip folds.
    pad_seconds: shorter clips are zero-padded to this length (seconds).

  Returns:
    The prepared builder; `skipped_clips(builder)` and
    `padded_clips(builder)` are its build report.

  Raises:
    mcl.runtime.errors.UserError: see `make_config` and `scan`.
  """
  features = features or audio.FeatureConfig()
  # One scan names the build and lists its clips, so the records hold
  # exactly the content their name was made from.
  folder = scan(source_dir)
  builder = LabelledFolders(
    config=make_config(folder, features, num_folds, pad_seconds),
    folder=folder,
    data_dir=data_dir,
  )
  try:
    builder.download_and_prepare()
  except FileExistsError:
    # Another process finished the same build first (its rename won): the
    # records are complete, so read them.
    logging.info(
      "Records of %s were built concurrently; reusing them.", source_dir
    )
    builder = LabelledFolders(
      config=builder.builder_config, folder=folder, data_dir=data_dir
    )
  skipped = skipped_clips(builder)
  logging.info(
    "Dataset %s: %d clips in %d folds, %d padded, %d skipped%s",
    builder.data_dir,
    builder.info.splits.total_num_examples,
    num_folds,
    len(padded_clips(builder)),
    len(skipped),
    "".join(f"\n  {s['path']}: {s['problem']}" for s in skipped),
  )
  return builder


def skipped_clips(builder: LabelledFolders) -> list[dict[str, str]]:
  """The build report: files that are not records, as [{"path": ...,
  "problem": ...}] (the folder's ignored files, then decoding failures)."""
  return list(builder.info.metadata.get("skipped", []))


def padded_clips(builder: LabelledFolders) -> list[dict]:
  """The build report's padded clips: [{"path": ..., "seconds": decoded
  length}], each stored zero-padded to the config's `pad_seconds`."""
  return list(builder.info.metadata.get("padded", []))
