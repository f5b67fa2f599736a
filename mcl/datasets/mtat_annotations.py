"""MagnaTagATune's manual download: label file, folder split, checks.

The user places `annotations_final.csv` (tab-separated, header row:
clip_id, 188 tag columns of 0/1, mp3_path; values may be double-quoted)
and the clip folders `mp3/0` ... `mp3/f` in one manual directory. Folders
0-b are the standard train split, c valid, d-f test (Won et al. 2020; Lee
et al. 2017).
"""

import csv
import dataclasses
import os

import numpy as np

from mcl.runtime import errors

ANNOTATIONS = "annotations_final.csv"
MP3_DIR = "mp3"
# Folder of a clip (first character of its mp3_path) -> split.
SPLIT_OF_FOLDER = {
  **{folder: "train" for folder in "0123456789ab"},
  "c": "valid",
  **{folder: "test" for folder in "def"},
}

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
Download MagnaTagATune from https://mirg.city.ac.uk/codeapps/the-magnatagatune-dataset
(mp3.zip.001-003 and {ANNOTATIONS}); unpack the clips so that the manual
directory holds {MP3_DIR}/0/ ... {MP3_DIR}/f/ and {ANNOTATIONS} beside them.
"""


@dataclasses.dataclass(frozen=True)
class Annotations:
  """The label file.

  Attributes:
    tag_names: the tag columns, in file order.
    clip_ids: int [clips].
    mp3_paths: relative paths, e.g. "f/artist-album-01-track-30-59.mp3".
    tags: uint8 [clips, tags] 0/1.
  """

  tag_names: tuple[str, ...]
  clip_ids: np.ndarray
  mp3_paths: tuple[str, ...]
  tags: np.ndarray


def read_annotations(path: str) -> Annotations:
  """Reads `annotations_final.csv` (tab-separated, values may be quoted).

  Args:
    path: the file.

  Returns:
    The annotations.

  Raises:
    FileNotFoundError: the file is missing.
    ValueError: a bad header, a row of the wrong length or a value that is
      not 0/1; the message names the file and line.
  """
  if not os.path.isfile(path):
    raise errors.MissingDataError(
      f"{path}: MagnaTagATune label file missing.{MANUAL_DOWNLOAD_INSTRUCTIONS}"
    )
  with open(path, newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f, delimiter="\t"))
  if not rows or rows[0][0] != "clip_id" or rows[0][-1] != "mp3_path":
    raise ValueError(
      f"{path}: header must be clip_id, <tag columns>, mp3_path; "
      f"got {rows[0][:2] if rows else 'an empty file'} ... "
      f"{rows[0][-1:] if rows else ''}"
    )
  header = rows[0]
  clip_ids, paths, tags = [], [], []
  for line, row in enumerate(rows[1:], start=2):
    if len(row) != len(header):
      raise ValueError(
        f"{path}:{line}: {len(row)} fields, the header has {len(header)}"
      )
    try:
      clip_ids.append(int(row[0]))
      values = [int(v) for v in row[1:-1]]
    except ValueError as e:
      raise ValueError(f"{path}:{line}: not an integer ({e})") from e
    if any(v not in (0, 1) for v in values):
      raise ValueError(f"{path}:{line}: tag values must be 0 or 1")
    tags.append(values)
    paths.append(row[-1])
  return Annotations(
    tag_names=tuple(header[1:-1]),
    clip_ids=np.asarray(clip_ids, np.int64),
    mp3_paths=tuple(paths),
    tags=np.asarray(tags, np.uint8).reshape(len(paths), len(header) - 2),
  )


def top_tags(annotations: Annotations, n: int) -> list[int]:
  """Columns of the `n` most frequent tags, most frequent first.

  Frequencies are counted over every clip of the file; ties keep file
  order.
  """
  counts = annotations.tags.sum(axis=0, dtype=np.int64)
  return np.argsort(-counts, kind="stable")[:n].tolist()


def split_of(mp3_path: str) -> str:
  """The split ("train", "valid" or "test") of a clip by its folder.

  Raises:
    ValueError: the path does not start with a folder 0-f.
  """
  folder = mp3_path.split("/", 1)[0]
  if folder not in SPLIT_OF_FOLDER:
    raise ValueError(f"{mp3_path}: not in a MagnaTagATune folder 0-f")
  return SPLIT_OF_FOLDER[folder]


def check_manual_dir(manual_dir: str) -> None:
  """Raises `mcl.runtime.errors.MissingDataError` (a FileNotFoundError) saying
  exactly what is missing and where."""
  missing = []
  if not os.path.isfile(os.path.join(manual_dir, ANNOTATIONS)):
    missing.append(f"{os.path.join(manual_dir, ANNOTATIONS)} (the label file)")
  if not os.path.isdir(os.path.join(manual_dir, MP3_DIR)):
    missing.append(
      f"{os.path.join(manual_dir, MP3_DIR)}/0 ... /f (the mp3 folders)"
    )
  if missing:
    raise errors.MissingDataError(
      "MagnaTagATune manual directory incomplete; missing: "
      + "; ".join(missing)
      + "."
      + MANUAL_DOWNLOAD_INSTRUCTIONS
    )
