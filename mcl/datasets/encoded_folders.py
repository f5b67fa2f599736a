"""TFDS builder of frozen-encoder embeddings of a labelled audio folder.

The clips are first the musicnn log-mel records of `mcl.datasets.
labelled_folders` (front end "musicnn": 16 kHz, 96 bands, log10(1 +
10000 x); clips shorter than a patch zero-padded to 3 s and marked, their
folds and build report). Each clip is cut into 187-frame (3-s) patches
every `patch_hop_seconds` and each patch goes once through the frozen
encoder (`mcl.models.encoders.Encoder`: batched, jitted, on every local
device); a record holds the clip's `embedding` float32 [patches, D] with
its label, clip id, fold and `padded` flag, in the same `fold<k>` splits.

The records are named by the log-mel records' name (the folder's path and
content, the front end, folds and padding), the encoder, the layer and the
hop: another encoder or layer, or a changed folder, is a new build, never
stale records. The build report (`metadata.json`) carries the log-mel
build's skipped and padded clips, the encoder, layer, hop and the
extraction's wall time in seconds.
"""

import dataclasses
import hashlib
import json
import time

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from mcl.datasets import labelled_folders
from mcl.features import logmel, patches
from mcl.models import encoders
from mcl.runtime import errors

_VERSION = tfds.core.Version("1.0.0")
# Clips whose patches are embedded together (bounds the memory held).
CLIPS_PER_WINDOW = 64


@dataclasses.dataclass(eq=False)
class EncodedFoldersConfig(tfds.core.BuilderConfig):
  """Which log-mel records to encode, and how.

  Attributes:
    log_mel_name: the musicnn log-mel records' config name.
    encoder: a checkpoint of `mcl.models.musicnn_checkpoint.CHECKPOINTS`.
    layer: one of `encoders.layers_of(encoder)`.
    patch_hop_seconds: seconds between patch starts.
    num_folds: the log-mel records' folds.
  """

  log_mel_name: str = ""
  encoder: str = ""
  layer: str = ""
  patch_hop_seconds: float = 1.5
  num_folds: int = 5


class EncodedFolders(tfds.core.GeneratorBasedBuilder):
  """Per-clip patch embeddings of a labelled folder, in folds."""

  VERSION = _VERSION
  BUILDER_CONFIGS = []

  def __init__(self, *, config: EncodedFoldersConfig, log_mels, **kwargs):
    """Args: the config (`make_config`); the prepared musicnn log-mel
    builder it names; `GeneratorBasedBuilder`'s `data_dir`."""
    self._log_mels = log_mels
    self._encoder = None
    super().__init__(config=config, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    dim = encoders.embedding_dimension(config.encoder, config.layer)
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "embedding": tfds.features.Tensor(
            shape=(None, dim), dtype=np.float32
          ),
          "label": tfds.features.ClassLabel(
            names=self._log_mels.info.features["label"].names
          ),
          "clip_id": tfds.features.Text(),
          "fold": np.int32,
          "padded": np.bool_,
        }
      ),
      metadata=tfds.core.MetadataDict(),
      description=f"{config.encoder} {config.layer} embeddings of "
      f"{self._log_mels.builder_config.source_dir}.",
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    config = self.builder_config
    self._encoder = encoders.Encoder(config.encoder, (config.layer,))
    self.info.metadata.update(
      {
        "skipped": labelled_folders.skipped_clips(self._log_mels),
        "padded": labelled_folders.padded_clips(self._log_mels),
        "encoder": config.encoder,
        "layer": config.layer,
        "patch_hop_seconds": config.patch_hop_seconds,
        "extraction_seconds": {},
      }
    )
    return {
      f"fold{k}": self._generate_examples(f"fold{k}")
      for k in range(config.num_folds)
    }

  def _generate_examples(self, split: str):
    start = time.perf_counter()
    rows = self._log_mels.as_dataset(split=split, shuffle_files=False)
    rows = list(tfds.as_numpy(rows))
    hop = patches.hop_frames(
      self.builder_config.patch_hop_seconds,
      logmel.MUSICNN_SAMPLE_RATE,
      logmel.MUSICNN_HOP,
    )
    for first in range(0, len(rows), CLIPS_PER_WINDOW):
      window = rows[first : first + CLIPS_PER_WINDOW]
      cuts = [
        patches.cut(r["log_mel"], logmel.MUSICNN_PATCH_FRAMES, hop)
        for r in window
      ]
      (embedded,) = self._encoder.embed(np.concatenate(cuts), progress=True)
      ends = np.cumsum([len(c) for c in cuts])
      for row, values in zip(
        window, np.split(embedded, ends[:-1]), strict=True
      ):
        clip_id = row["clip_id"].decode()
        yield (
          clip_id,
          {
            "embedding": values,
            "label": row["label"],
            "clip_id": clip_id,
            "fold": row["fold"],
            "padded": row["padded"],
          },
        )
    seconds = time.perf_counter() - start
    self.info.metadata["extraction_seconds"][split] = round(seconds, 2)
    logging.info("%s: %d clips encoded in %.1f s", split, len(rows), seconds)


def make_config(
  log_mels, encoder: str, layer: str, patch_hop_seconds: float
) -> EncodedFoldersConfig:
  """The config whose name covers the log-mel records (folder content,
  front end, folds, padding), the encoder, the layer and the hop."""
  key = json.dumps(
    [log_mels.builder_config.name, encoder, layer, patch_hop_seconds]
  )
  digest = hashlib.sha1(key.encode()).hexdigest()[:10]
  return EncodedFoldersConfig(
    name=f"{encoder.lower()}_{layer}_{digest}",
    version=_VERSION,
    log_mel_name=log_mels.builder_config.name,
    encoder=encoder,
    layer=layer,
    patch_hop_seconds=patch_hop_seconds,
    num_folds=log_mels.builder_config.num_folds,
  )


def build(
  log_mels, data_dir: str, encoder: str, layer: str, patch_hop_seconds: float
) -> EncodedFolders:
  """Builds (or reuses) the embedding records of prepared musicnn log-mel
  records (`labelled_folders.build` with front end "musicnn").

  Args:
    log_mels: the prepared `labelled_folders.LabelledFolders`.
    data_dir: TFDS data directory where the records are written.
    encoder: the checkpoint.
    layer: its layer (`encoders.resolve_layer`).
    patch_hop_seconds: seconds between patch starts, > 0.

  Returns:
    The prepared builder.

  Raises:
    mcl.runtime.errors.UserError: an unknown encoder or layer, or records
      of another front end than musicnn's.
    mcl.runtime.errors.MissingDataError: the musicnn package is missing.
  """
  layer = encoders.resolve_layer(encoder, layer)
  if log_mels.builder_config.features.front_end != "musicnn":
    raise errors.UserError(
      f"data.encoder={encoder!r} reads the musicnn front end; set "
      "features.front_end='musicnn' (configs/gtzan_musicnn.py)"
    )
  config = make_config(log_mels, encoder, layer, patch_hop_seconds)
  builder = EncodedFolders(config=config, log_mels=log_mels, data_dir=data_dir)
  try:
    builder.download_and_prepare()
  except FileExistsError:  # Built concurrently by another process.
    builder = EncodedFolders(
      config=config, log_mels=log_mels, data_dir=data_dir
    )
  logging.info(
    "Embeddings %s: %d clips, %s",
    builder.data_dir,
    builder.info.splits.total_num_examples,
    builder.info.metadata.get("extraction_seconds"),
  )
  return builder
