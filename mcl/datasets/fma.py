"""TFDS builder `fma`: the Free Music Archive (Defferrard et al., ISMIR 2017).

Manual download (`fma_metadata` describes the layout): the metadata tables
in `<manual_dir>/fma_metadata/` and the clips of a subset in
`<manual_dir>/fma_<subset>/000/000002.mp3 ...`.

Builder configs, each keeping the tracks of its subset that have a top
genre (`track/genre_top`), labelled by it (a ClassLabel over the subset's
top genres, sorted by name), in the dataset's own `set/split`:
  small            8 genres, 8,000 30 s clips (fma_small)
  medium           16 genres, 25,000 clips (fma_medium)
  large            every track with a top genre (fma_large, 16 genres)
  <subset>_features  the same tracks with FMA's 518 precomputed features
                   (`fma_metadata/features.csv`) instead of audio; reads no
                   audio at all.

Audio configs decode each clip once (16 kHz mono; header durations are not
trusted), store its log-mel (`mcl.features.audio`) and, when asked, its
waveform as 16-bit PCM. Decoding runs in parallel worker processes with a
progress bar. Clips that cannot be featurised (FMA ships several empty,
truncated or undecodable MP3s) are skipped, logged and listed in the dataset's
`metadata.json` under "skipped"; so are tracks without a features row.
"""

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from mcl.datasets import extraction, fma_metadata
from mcl.features import audio, track_features
from mcl.runtime import errors

_VERSION = tfds.core.Version("1.0.0")
SPLITS = ("train", "validation", "test")
# FMA clips are 30 s; one decoding to under 10 s is truncated.
FEATURES = audio.FeatureConfig(min_seconds=10.0)


@dataclasses.dataclass(eq=False)
class FmaConfig(tfds.core.BuilderConfig):
  """Which tracks to keep and what to store of them.

  Attributes:
    subset: "small", "medium" or "large".
    precomputed: store FMA's 518 features instead of reading audio.
    features: log-mel parameters of audio configs; `min_seconds` rejects
      truncated clips.
    waveform: also store the 16 kHz waveform as int16 PCM.
  """

  subset: str = "small"
  precomputed: bool = False
  features: audio.FeatureConfig = FEATURES
  waveform: bool = False


def make_config(
  subset: str,
  features: audio.FeatureConfig = FEATURES,
  *,
  waveform: bool = False,
  precomputed: bool = False,
) -> FmaConfig:
  """The registered config for default settings, else a derived one.

  Registered: `<subset>` (log-mel) and `<subset>_features` (precomputed).
  A derived config is named `<subset>_<digest of the settings>`, so two
  builds with equal settings share their records.

  Args:
    subset: "small", "medium" or "large".
    features: log-mel parameters (ignored when `precomputed`).
    waveform: also store the 16 kHz waveform (int16 PCM).
    precomputed: store the 518 features of `features.csv`, no audio.

  Raises:
    ValueError: unknown subset, or a waveform asked of a precomputed
      config.
  """
  if subset not in fma_metadata.SUBSETS:
    raise ValueError(
      f"subset must be one of {fma_metadata.SUBSETS}, got {subset!r}"
    )
  if precomputed and waveform:
    raise ValueError("a precomputed (features) config reads no waveform")
  if precomputed:
    features = FEATURES
  config = FmaConfig(
    name=f"{subset}_features" if precomputed else subset,
    version=_VERSION,
    subset=subset,
    precomputed=precomputed,
    features=features,
    waveform=waveform,
  )
  if precomputed or (features, waveform) == (FEATURES, False):
    return config
  key = json.dumps([dataclasses.asdict(features), waveform], sort_keys=True)
  digest = hashlib.sha1(key.encode()).hexdigest()[:10]
  return dataclasses.replace(config, name=f"{subset}_{digest}")


class Fma(tfds.core.GeneratorBasedBuilder):
  """FMA top-genre tracks: log-mel clips or the 518 precomputed features."""

  name = "fma"
  VERSION = _VERSION
  BUILDER_CONFIGS = [
    make_config(subset, precomputed=precomputed)
    for precomputed in (False, True)
    for subset in fma_metadata.SUBSETS
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = fma_metadata.MANUAL_DOWNLOAD_INSTRUCTIONS

  def __init__(self, *, num_workers: int | None = None, **kwargs):
    """Args: num_workers: feature processes (default: all cores)."""
    self._num_workers = num_workers or os.cpu_count() or 1
    self._skipped = []
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    features = {
      # Names are the subset's top genres, known once tracks.csv is read.
      "label": tfds.features.ClassLabel(),
      "track_id": np.int64,
    }
    if config.precomputed:
      features["features"] = tfds.features.Tensor(
        shape=(len(track_features.columns()),), dtype=np.float32
      )
    else:
      features["log_mel"] = tfds.features.Tensor(
        shape=(None, config.features.n_mels), dtype=np.float32
      )
    if config.waveform:
      features["waveform"] = tfds.features.Tensor(shape=(None,), dtype=np.int16)
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(features),
      metadata=tfds.core.MetadataDict(),
      description=f"Free Music Archive, {config.subset} subset, top genres.",
      homepage="https://github.com/mdeff/fma",
    )

  def _split_generators(self, dl_manager):
    config = self.builder_config
    manual_dir = dl_manager.manual_dir
    fma_metadata.check_manual_dir(manual_dir, config.subset, config.precomputed)
    tracks = fma_metadata.read_tracks(
      fma_metadata.metadata_path(manual_dir, fma_metadata.TRACKS)
    )
    genres_path = fma_metadata.metadata_path(manual_dir, fma_metadata.GENRES)
    top_genres = fma_metadata.read_top_genres(genres_path)
    keep, names = tracks.labelled(config.subset)
    unknown = [n for n in names if n not in top_genres]
    if unknown:
      raise errors.UserError(
        f"{genres_path}: top genres {unknown} of tracks.csv are not "
        "top-level genres (parent 0) here"
      )
    self.info.features["label"].names = names
    self.info.metadata["genre_ids"] = [top_genres[n] for n in names]
    self.info.metadata["skipped"] = self._skipped
    selected = [
      {
        "track_id": int(tracks.track_ids[i]),
        "split": tracks.splits[i],
        "label": names.index(tracks.genre_tops[i]),
      }
      for i in np.flatnonzero(keep)
    ]
    by_split = {
      split: [t for t in selected if t["split"] == split] for split in SPLITS
    }
    self.info.metadata["selected"] = {s: len(t) for s, t in by_split.items()}
    if config.precomputed:
      rows = fma_metadata.read_features(
        fma_metadata.metadata_path(manual_dir, fma_metadata.FEATURES)
      )
      return {
        split: self._generate_precomputed(rows, split_tracks)
        for split, split_tracks in by_split.items()
      }
    audio_dir = fma_metadata.find_audio_dir(manual_dir, config.subset)
    return {
      split: self._generate_examples(audio_dir, split_tracks, split)
      for split, split_tracks in by_split.items()
    }

  def _generate_precomputed(
    self, rows: tuple[np.ndarray, np.ndarray], split_tracks: list[dict]
  ) -> Iterator[tuple[int, dict]]:
    track_ids, values = rows
    row_of = {int(t): r for r, t in enumerate(track_ids)}
    for track in split_tracks:
      track_id = track["track_id"]
      row = row_of.get(track_id)
      if row is None or not np.all(np.isfinite(values[row])):
        problem = (
          "no row in features.csv"
          if row is None
          else "non-finite values in features.csv"
        )
        logging.warning("Skipping track %d: %s", track_id, problem)
        self._skipped.append({"track_id": track_id, "problem": problem})
        continue
      yield (
        track_id,
        {
          "features": values[row],
          "label": track["label"],
          "track_id": track_id,
        },
      )

  def _generate_examples(
    self, audio_dir: str, split_tracks: list[dict], split: str
  ) -> Iterator[tuple[int, dict]]:
    """The log-mel examples of audio configs (precomputed configs use
    `_generate_precomputed`)."""
    config = self.builder_config
    paths = [
      fma_metadata.audio_path(audio_dir, t["track_id"]) for t in split_tracks
    ]
    for i, features, problem in extraction.featurise_all(
      paths,
      config.features,
      config.waveform,
      self._num_workers,
      f"FMA {split}",
    ):
      track, path = split_tracks[i], paths[i]
      if features is None:
        logging.warning("Skipping track %s: %s", path, problem)
        self._skipped.append(
          {"track_id": track["track_id"], "path": path, "problem": problem}
        )
        continue
      yield (
        track["track_id"],
        {
          **features,
          "label": track["label"],
          "track_id": track["track_id"],
        },
      )


def label_names(manual_dir: str, subset: str) -> list[str]:
  """The label names of `subset` from `tracks.csv` alone (no records).

  Args:
    manual_dir: the FMA download (`fma_metadata/` inside).
    subset: "small", "medium" or "large".

  Returns:
    The subset's top genres, sorted: the records' label names.

  Raises:
    mcl.runtime.errors.MissingDataError: `fma_metadata/tracks.csv` is missing.
  """
  path = fma_metadata.metadata_path(manual_dir, fma_metadata.TRACKS)
  if not os.path.exists(path):
    raise errors.MissingDataError(
      f"{path} missing; {fma_metadata.MANUAL_DOWNLOAD_INSTRUCTIONS}"
    )
  return fma_metadata.read_tracks(path).labelled(subset)[1]


def build(
  manual_dir: str,
  data_dir: str,
  config: FmaConfig,
  *,
  num_workers: int | None = None,
) -> Fma:
  """Builds (or reuses) FMA records.

  Each example holds "label" (int64, index into
  `info.features["label"].names`, the subset's top genres sorted by name),
  "track_id" (int64) and either "log_mel" (float32 [frames, n_mels], dB;
  frames = 1 + samples // hop_length at 16 kHz) or, for a precomputed
  config, "features" (float32 [518], `mcl.features.track_features.columns()`
  order); with `config.waveform` also "waveform" (int16 [samples] PCM at
  16 kHz; divide by 32767 for [-1, 1]). Splits: train, validation, test.

  Args:
    manual_dir: holds `fma_metadata/` and, for audio configs,
      `fma_<subset>/` (or a larger subset's folder).
    data_dir: TFDS data directory where the records are written.
    config: from `make_config`.
    num_workers: feature-extraction processes (default: all cores).

  Returns:
    The prepared builder; `info.metadata["skipped"]` lists skipped tracks
    (track_id, path for audio, problem), `info.metadata["genre_ids"]` the
    FMA genre id of each label.

  Raises:
    mcl.runtime.errors.MissingDataError: (a FileNotFoundError) the manual
      directory lacks a piece; the message says what to put where.
    mcl.runtime.errors.UserError: a malformed metadata file (e.g. features.csv
      columns not in FMA's order, a top genre of tracks.csv that
      genres.csv lacks); the message names the file.
  """
  return extraction.prepare(
    Fma,
    config,
    manual_dir,
    data_dir,
    num_workers,
    lambda: fma_metadata.check_manual_dir(
      manual_dir, config.subset, config.precomputed
    ),
  )
