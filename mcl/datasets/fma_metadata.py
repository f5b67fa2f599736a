"""The Free Music Archive's manual download: metadata tables and layout.

Defferrard et al., "FMA: a dataset for music analysis" (ISMIR 2017). The
user unpacks `fma_metadata.zip` and one or more of `fma_small.zip`,
`fma_medium.zip`, `fma_large.zip` into one manual directory:

  <manual_dir>/fma_metadata/tracks.csv    two header rows (group: album,
                                          artist, set, track; column),
                                          a `track_id` row, then one row
                                          per track; quoted where a field
                                          holds a comma
  <manual_dir>/fma_metadata/genres.csv    genre_id, #tracks, parent,
                                          title, top_level
  <manual_dir>/fma_metadata/features.csv  three header rows (feature,
                                          statistics, number), a
                                          `track_id` row, then 518 floats
                                          per track
  <manual_dir>/fma_small/000/000002.mp3   audio: folder = first 3 digits
                                          of the 6-digit track id

`set/split` (training, validation, test) is the dataset's own split and
`set/subset` the smallest subset holding a track: small is inside medium,
which is inside large.
"""

import dataclasses
import os

import numpy as np
import pandas as pd

from mcl.features import track_features
from mcl.runtime import errors

METADATA_DIR = "fma_metadata"
TRACKS = "tracks.csv"
GENRES = "genres.csv"
FEATURES = "features.csv"
# Nested: a track of subset "small" is also in medium and large.
SUBSETS = ("small", "medium", "large")
# `set/split` value -> TFDS split name.
SPLIT_NAMES = {"training": "train", "validation": "validation", "test": "test"}
_GENRE_COLUMNS = ["genre_id", "#tracks", "parent", "title", "top_level"]

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
Download the Free Music Archive (https://github.com/mdeff/fma):
fma_metadata.zip and fma_<subset>.zip (subset small, medium or large) from
https://os.unil.cloud.switch.ch/fma/ ; unzip them in the manual directory
so that it holds {METADATA_DIR}/{TRACKS}, {METADATA_DIR}/{GENRES},
{METADATA_DIR}/{FEATURES} and fma_<subset>/000/000002.mp3 ...
"""


@dataclasses.dataclass(frozen=True)
class Tracks:
  """The columns of `tracks.csv` the builder uses.

  Attributes:
    track_ids: int64 [tracks], in file order.
    splits: TFDS split of each track: "train", "validation" or "test".
    subsets: smallest subset of each track: "small", "medium" or "large".
    genre_tops: `track/genre_top` of each track, None where empty.
  """

  track_ids: np.ndarray
  splits: tuple[str, ...]
  subsets: tuple[str, ...]
  genre_tops: tuple[str | None, ...]

  def in_subset(self, subset: str) -> np.ndarray:
    """bool [tracks]: the track belongs to `subset` (subsets nest)."""
    rank = SUBSETS.index(subset)
    return np.asarray([SUBSETS.index(s) <= rank for s in self.subsets], bool)

  def labelled(self, subset: str) -> tuple[np.ndarray, list[str]]:
    """(bool [tracks]: of `subset` with a top genre; those genres' names,
    sorted: the label names of the subset)."""
    keep = self.in_subset(subset) & np.asarray(
      [g is not None for g in self.genre_tops]
    )
    names = sorted({self.genre_tops[i] for i in np.flatnonzero(keep)})
    return keep, names


def metadata_path(manual_dir: str, name: str) -> str:
  """`<manual_dir>/fma_metadata/<name>`."""
  return os.path.join(manual_dir, METADATA_DIR, name)


def audio_path(audio_dir: str, track_id: int) -> str:
  """`<audio_dir>/000/000002.mp3` for track 2."""
  name = f"{track_id:06d}"
  return os.path.join(audio_dir, name[:3], f"{name}.mp3")


def find_audio_dir(manual_dir: str, subset: str) -> str | None:
  """The first of `fma_<subset>`, then larger subsets' folders, that
  exists (a larger folder holds every track of a smaller subset); None if
  none does."""
  for name in SUBSETS[SUBSETS.index(subset) :]:
    folder = os.path.join(manual_dir, f"fma_{name}")
    if os.path.isdir(folder):
      return folder
  return None


def check_manual_dir(manual_dir: str, subset: str, precomputed: bool):
  """Raises if a piece the build needs is missing.

  Args:
    manual_dir: the manual directory.
    subset: "small", "medium" or "large".
    precomputed: the build reads `features.csv` instead of audio.

  Raises:
    mcl.runtime.errors.MissingDataError: (a FileNotFoundError) the message lists
      every missing file or folder with its full path and where to
      download it.
  """
  missing = []
  folder = os.path.join(manual_dir, METADATA_DIR)
  if not os.path.isdir(folder):
    missing.append(f"{folder}/ (the unzipped fma_metadata.zip)")
  else:
    for name in (TRACKS, GENRES, FEATURES) if precomputed else (TRACKS, GENRES):
      if not os.path.isfile(metadata_path(manual_dir, name)):
        missing.append(
          f"{metadata_path(manual_dir, name)} (from fma_metadata.zip)"
        )
  if not precomputed and find_audio_dir(manual_dir, subset) is None:
    missing.append(
      f"{os.path.join(manual_dir, f'fma_{subset}')}/000/000002.mp3 ... "
      f"(the unzipped fma_{subset}.zip)"
    )
  if missing:
    raise errors.MissingDataError(
      "FMA manual directory incomplete; missing: "
      + "; ".join(missing)
      + "."
      + MANUAL_DOWNLOAD_INSTRUCTIONS
    )


def _require_file(path: str) -> None:
  if not os.path.isfile(path):
    raise errors.MissingDataError(
      f"{path}: FMA metadata file missing.{MANUAL_DOWNLOAD_INSTRUCTIONS}"
    )


def read_tracks(path: str) -> Tracks:
  """Reads `tracks.csv` (two header rows, a `track_id` row, quoted fields).

  Args:
    path: the file.

  Returns:
    The split, subset and top genre of every track.

  Raises:
    mcl.runtime.errors.MissingDataError: the file is missing.
    mcl.runtime.errors.UserError: a needed column is missing, or a track id,
      split or subset is malformed; the message names the file.
  """
  _require_file(path)
  # As text: columns of mixed types would otherwise be guessed per chunk.
  table = pd.read_csv(path, index_col=0, header=[0, 1], dtype=str)
  needed = [("set", "split"), ("set", "subset"), ("track", "genre_top")]
  absent = [f"{a}/{b}" for a, b in needed if (a, b) not in table.columns]
  if absent:
    raise errors.UserError(
      f"{path}: columns {absent} missing; is it FMA's tracks.csv (two "
      "header rows: group, column)?"
    )
  try:
    track_ids = table.index.astype(np.int64).to_numpy()
  except (TypeError, ValueError) as e:
    raise errors.UserError(f"{path}: a track id is not an integer ({e})") from e
  splits = table["set", "split"].tolist()
  subsets = table["set", "subset"].tolist()
  for track_id, split, subset in zip(track_ids, splits, subsets, strict=True):
    if split not in SPLIT_NAMES or subset not in SUBSETS:
      raise errors.UserError(
        f"{path}: track {track_id} has set/split {split!r} and set/subset "
        f"{subset!r}; expected one of {sorted(SPLIT_NAMES)} and {SUBSETS}"
      )
  genre_tops = table["track", "genre_top"]
  return Tracks(
    track_ids=track_ids,
    splits=tuple(SPLIT_NAMES[s] for s in splits),
    subsets=tuple(subsets),
    genre_tops=tuple(g if isinstance(g, str) else None for g in genre_tops),
  )


def read_top_genres(path: str) -> dict[str, int]:
  """Reads `genres.csv`: the top-level genres (parent 0).

  Args:
    path: the file.

  Returns:
    {title: genre_id} of the top-level genres, e.g. {"Rock": 12, ...}.

  Raises:
    mcl.runtime.errors.MissingDataError: the file is missing.
    mcl.runtime.errors.UserError: its header is not FMA's; the message names the
      file.
  """
  _require_file(path)
  table = pd.read_csv(path)
  if list(table.columns) != _GENRE_COLUMNS:
    raise errors.UserError(
      f"{path}: header must be {','.join(_GENRE_COLUMNS)}, got "
      f"{','.join(map(str, table.columns))}"
    )
  top = table[table["parent"] == 0]
  return {
    str(t): int(g) for t, g in zip(top["title"], top["genre_id"], strict=True)
  }


def read_features(path: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads `features.csv`: FMA's 518 precomputed librosa statistics.

  Args:
    path: the file (three header rows: feature, statistics, number).

  Returns:
    track_ids int64 [tracks] and features float32 [tracks, 518], columns
    in `mcl.features.track_features.columns()` order.

  Raises:
    mcl.runtime.errors.MissingDataError: the file is missing.
    mcl.runtime.errors.UserError: its columns differ from
      `mcl.features.track_features.columns()` (names or order), or a value is
      not a number; the message names the file.
  """
  _require_file(path)
  table = pd.read_csv(path, index_col=0, header=[0, 1, 2])
  found = [tuple(map(str, c)) for c in table.columns]
  expected = track_features.columns()
  if found != expected:
    where = next(
      (
        i
        for i, (f, e) in enumerate(zip(found, expected, strict=False))
        if f != e
      ),
      min(len(found), len(expected)),
    )
    raise errors.UserError(
      f"{path}: {len(found)} columns, not FMA's {len(expected)} in "
      "mcl.features.track_features.columns() order; first difference at column "
      f"{where + 1}: {found[where] if where < len(found) else 'none'} where "
      f"{expected[where] if where < len(expected) else 'none'} is expected"
    )
  try:
    track_ids = table.index.astype(np.int64).to_numpy()
    values = table.to_numpy(dtype=np.float32)
  except (TypeError, ValueError) as e:
    raise errors.UserError(f"{path}: not a table of numbers ({e})") from e
  return track_ids, values
