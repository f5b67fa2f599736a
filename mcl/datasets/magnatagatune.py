"""TFDS builder `magnatagatune`: MagnaTagATune (Law et al., ISMIR 2009).

Manual download: the user places the clips and the label file in the
manual directory as

  <manual_dir>/annotations_final.csv     tab-separated, header row:
                                         clip_id, 188 tag columns (0/1),
                                         mp3_path
  <manual_dir>/mp3/0/ ... mp3/f/         the 16 folders of mp3 clips

Builder configs:
  top50   the standard tagging benchmark (Won et al. 2020; Lee et al.
          2017), split by rule: the 50 most frequent tags over the whole
          annotation file, clips carrying at least one of them whose
          decoded length is at least 29.1 s; folders 0-b train, c valid,
          d-f test.
  genres  single-label genre clips (Yoon et al. 2018's MTAT scenario):
          clips carrying exactly one tag of a configured genre set, in the
          same folder split.

Each clip is decoded once (16 kHz mono; header durations are not trusted),
its log-mel stored (`mcl.features.audio`) and, when asked, its waveform as
16-bit PCM. Decoding and feature extraction run in parallel worker processes
with a progress bar. Clips that cannot be featurised (missing, empty,
corrupt, shorter than the length rule) are skipped, logged and listed in
the dataset's `metadata.json` under "skipped".
"""

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from mcl.datasets import extraction, mtat_annotations
from mcl.features import audio
from mcl.runtime import errors

_VERSION = tfds.core.Version("1.0.0")
# The seed paper's MTAT genre scenario; all are among the top-50 tags.
GENRES = (
  "classical",
  "techno",
  "rock",
  "pop",
  "ambient",
  "indian",
  "metal",
  "country",
  "opera",
  "new age",
)
# The length rule of the top-50 split: 29.1 s of decoded audio.
FEATURES = audio.FeatureConfig(min_seconds=29.1, silence_db=-100.0)


@dataclasses.dataclass(eq=False)
class MagnaTagATuneConfig(tfds.core.BuilderConfig):
  """Which clips to keep and how to featurise them.

  Attributes:
    selection: "top50" (multi-label) or "genres" (single-label).
    num_tags: tags kept by "top50".
    genres: the genre tags of "genres", in label-id order.
    features: log-mel parameters; `min_seconds` is the length rule.
    waveform: also store the 16 kHz waveform as int16 PCM.
  """

  selection: str = "top50"
  num_tags: int = 50
  genres: tuple[str, ...] = GENRES
  features: audio.FeatureConfig = FEATURES
  waveform: bool = False


def make_config(
  selection: str,
  features: audio.FeatureConfig = FEATURES,
  *,
  genres: Sequence[str] = GENRES,
  waveform: bool = False,
  num_tags: int = 50,
) -> MagnaTagATuneConfig:
  """The registered config for default settings, else a derived one.

  A derived config is named `<selection>_<digest of the settings>`, so two
  builds with equal settings share their records.

  Args:
    selection: "top50" or "genres".
    features: log-mel parameters; `min_seconds` is the length rule.
    genres: the genre tags of "genres", in label-id order.
    waveform: also store the 16 kHz waveform (int16 PCM).
    num_tags: tags kept by "top50" (50 in the benchmark).

  Raises:
    ValueError: unknown selection or fewer than two genres.
  """
  if selection not in ("top50", "genres"):
    raise ValueError(f"selection must be top50 or genres, got {selection!r}")
  if selection == "genres" and len(set(genres)) < 2:
    raise ValueError(f"need at least two distinct genres, got {genres}")
  config = MagnaTagATuneConfig(
    name=selection,
    version=_VERSION,
    selection=selection,
    genres=tuple(genres),
    features=features,
    waveform=waveform,
    num_tags=num_tags,
  )
  if (features, waveform, num_tags) == (FEATURES, False, 50) and (
    selection == "top50" or tuple(genres) == GENRES
  ):
    return config
  key = json.dumps(
    [dataclasses.asdict(features), list(genres), waveform, num_tags],
    sort_keys=True,
  )
  digest = hashlib.sha1(key.encode()).hexdigest()[:10]
  return dataclasses.replace(config, name=f"{selection}_{digest}")


class MagnaTagATune(tfds.core.GeneratorBasedBuilder):
  """MagnaTagATune log-mel clips: top-50 tags or single-label genres."""

  name = "magnatagatune"
  VERSION = _VERSION
  BUILDER_CONFIGS = [make_config("top50"), make_config("genres")]
  MANUAL_DOWNLOAD_INSTRUCTIONS = mtat_annotations.MANUAL_DOWNLOAD_INSTRUCTIONS

  def __init__(self, *, num_workers: int | None = None, **kwargs):
    """Args: num_workers: feature processes (default: all cores)."""
    self._num_workers = num_workers or os.cpu_count() or 1
    self._skipped = []
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    features = {
      "log_mel": tfds.features.Tensor(
        shape=(None, config.features.n_mels), dtype=np.float32
      ),
      "clip_id": np.int64,
      "mp3_path": tfds.features.Text(),
    }
    if config.waveform:
      features["waveform"] = tfds.features.Tensor(shape=(None,), dtype=np.int16)
    if config.selection == "top50":
      features["tags"] = tfds.features.Tensor(
        shape=(config.num_tags,), dtype=np.float32
      )
    else:
      features["label"] = tfds.features.ClassLabel(names=list(config.genres))
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(features),
      metadata=tfds.core.MetadataDict(),
      description=f"MagnaTagATune, {config.selection} selection.",
    )

  def _split_generators(self, dl_manager):
    manual_dir = dl_manager.manual_dir
    mtat_annotations.check_manual_dir(manual_dir)
    annotations = mtat_annotations.read_annotations(
      os.path.join(manual_dir, mtat_annotations.ANNOTATIONS)
    )
    clips = self._select(annotations)
    self.info.metadata["skipped"] = self._skipped
    self.info.metadata["selected"] = {
      split: sum(1 for c in clips if c["split"] == split)
      for split in ("train", "valid", "test")
    }
    mp3_dir = os.path.join(manual_dir, mtat_annotations.MP3_DIR)
    return {
      split: self._generate_examples(
        mp3_dir, [c for c in clips if c["split"] == split], split
      )
      for split in ("train", "valid", "test")
    }

  def _select(self, annotations: mtat_annotations.Annotations) -> list[dict]:
    """The clips of the config, with their labels and split."""
    config = self.builder_config
    names = list(annotations.tag_names)
    if config.selection == "top50":
      if len(names) < config.num_tags:
        raise ValueError(
          f"{mtat_annotations.ANNOTATIONS} has {len(names)} tag columns; "
          f"the selection keeps the {config.num_tags} most frequent"
        )
      columns = mtat_annotations.top_tags(annotations, config.num_tags)
      self.info.metadata["tags"] = [names[c] for c in columns]
      labels = annotations.tags[:, columns].astype(np.float32)
      keep = labels.sum(axis=1) > 0
    else:
      unknown = [g for g in config.genres if g not in names]
      if unknown:
        raise errors.UserError(
          f"genres {unknown} are not tags of the label file "
          "(change config.data.genres)"
        )
      genre_tags = annotations.tags[:, [names.index(g) for g in config.genres]]
      keep = genre_tags.sum(axis=1) == 1
      labels = genre_tags.argmax(axis=1)
    return [
      {
        "clip_id": int(annotations.clip_ids[i]),
        "mp3_path": annotations.mp3_paths[i],
        "split": mtat_annotations.split_of(annotations.mp3_paths[i]),
        "labels": labels[i],
      }
      for i in np.flatnonzero(keep)
    ]

  def _generate_examples(
    self, mp3_dir: str, clips: list[dict], split: str
  ) -> Iterator[tuple[int, dict]]:
    config = self.builder_config
    paths = [os.path.join(mp3_dir, c["mp3_path"]) for c in clips]
    label_key = "tags" if config.selection == "top50" else "label"
    for i, features, problem in extraction.featurise_all(
      paths,
      config.features,
      config.waveform,
      self._num_workers,
      f"MTAT {split}",
    ):
      clip, path = clips[i], paths[i]
      if features is None:
        logging.warning("Skipping clip %s: %s", path, problem)
        self._skipped.append({"path": path, "problem": problem})
        continue
      yield (
        clip["clip_id"],
        {
          **features,
          "clip_id": clip["clip_id"],
          "mp3_path": clip["mp3_path"],
          label_key: clip["labels"],
        },
      )


def build(
  manual_dir: str,
  data_dir: str,
  config: MagnaTagATuneConfig,
  *,
  num_workers: int | None = None,
) -> MagnaTagATune:
  """Builds (or reuses) MagnaTagATune records.

  Args:
    manual_dir: holds `annotations_final.csv` and `mp3/0` ... `mp3/f`.
    data_dir: TFDS data directory where the records are written.
    config: from `make_config`.
    num_workers: feature-extraction processes (default: all cores).

  Returns:
    The prepared builder; `info.metadata["skipped"]` lists skipped clips
    and, for top50, `info.metadata["tags"]` the tag of each label column.

  Raises:
    mcl.runtime.errors.MissingDataError: (a FileNotFoundError) the manual
      directory lacks a piece; the message says what to put where.
    ValueError: a malformed label file or an unknown genre.
  """
  return extraction.prepare(
    MagnaTagATune,
    config,
    manual_dir,
    data_dir,
    num_workers,
    lambda: mtat_annotations.check_manual_dir(manual_dir),
  )
