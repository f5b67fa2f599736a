"""Shared fixtures: real audio from ../shared/data, tiny configs."""

import os

import pytest

from configs import test as test_config

SHARED_DATA = os.path.join(
  os.path.dirname(__file__), os.pardir, os.pardir, "shared", "data"
)
GTZAN = os.path.join(SHARED_DATA, "gtzan_excerpts")
MTAT_CLIP = os.path.join(
  SHARED_DATA,
  "mtat_sample",
  "mp3",
  "e",
  "joram-moments_of_clarity-08-solipsism-59-88.mp3",
)
TINY_GENRES = ("blues", "classical", "metal", "pop")
TINY_CLIPS_PER_GENRE = 5


@pytest.fixture(scope="session")
def gtzan_dir():
  if not os.path.isdir(GTZAN):
    pytest.skip(f"real audio not found at {GTZAN}")
  return os.path.abspath(GTZAN)


@pytest.fixture(scope="session")
def tiny_audio_dir(gtzan_dir, tmp_path_factory):
  """4 genres x 5 real GTZAN clips, linked into a <label>/<clip> folder."""
  root = tmp_path_factory.mktemp("tiny_gtzan")
  for genre in TINY_GENRES:
    os.makedirs(root / genre)
    for i in range(TINY_CLIPS_PER_GENRE):
      name = f"{genre}.{i:05d}.wav"
      os.symlink(os.path.join(gtzan_dir, genre, name), root / genre / name)
  return str(root)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
  """One TFDS data dir for the session, so records are built once."""
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture
def tiny_config(tiny_audio_dir, tiny_data_dir):
  config = test_config.get_config()
  config.data.source_dir = tiny_audio_dir
  config.data.data_dir = tiny_data_dir
  return config
