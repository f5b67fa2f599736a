"""Shared fixtures: real audio from ../shared/data, tiny configs, a fork
server; and the suite's XLA settings."""

import atexit
import os
import shutil
import tempfile

# Before JAX is imported (XLA reads XLA_FLAGS once). Compiling is most of
# the suite's time on CPU and the tiny networks gain nothing from XLA's
# backend optimisation: without it the suite compiles about 2x faster
# (BUILD_NOTES.md, "Performance figures"). Runs outside the suite keep
# XLA's default.
O0_FLAG = "--xla_backend_optimization_level=0"
if O0_FLAG not in os.environ.get("XLA_FLAGS", ""):
  flags = os.environ.get("XLA_FLAGS", "")
  os.environ["XLA_FLAGS"] = f"{flags} {O0_FLAG}".strip()

# librosa's numba functions are compiled and cached on first use, and
# processes that compile the same gufuncs at once into one cache can
# write mismatched files, which then crash every process that loads them
# (numba issue #10128: a segfault at address 0, seen here in a fresh
# venv). Each pytest worker gets a cache of its own for the session; in
# it, parallel feature extraction compiles in the parent first
# (`mcl.datasets.extraction.parallel_map`) and the fork server before it
# forks (`forked`).
_NUMBA_CACHE = tempfile.mkdtemp(prefix="mcl-numba-")
atexit.register(shutil.rmtree, _NUMBA_CACHE, ignore_errors=True)
os.environ["NUMBA_CACHE_DIR"] = _NUMBA_CACHE

import pytest  # noqa: E402

from mcl.configs import test as test_config  # noqa: E402
from mcl.runtime import compilations as xla_compilations  # noqa: E402
from tests import forks  # noqa: E402

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
MTAT_GENRES = ("classical", "metal", "pop", "rock")
# GTZAN clip index -> MTAT folder: 6 train, 2 valid, 2 test clips per genre.
MTAT_FOLDERS = ("0", "3", "5", "7", "9", "b", "c", "c", "d", "f")
TINY_CLIPS_PER_GENRE = 5


@pytest.fixture(scope="session")
def forked(tmp_path_factory):
  """A fork server that has imported what mcl's entry points import
  (tests/forks.py):
  tests of command lines and of several processes get real processes
  without paying 6-9 s of imports for each. Children see PYTHONPATH set
  to the repository and the suite's XLA_FLAGS (read by the server's
  import of JAX: a child asks for more CPU devices through JAX's config,
  `jax_num_cpu_devices`)."""
  env = dict(os.environ, PYTHONPATH=forks.ROOT)
  folder = str(tmp_path_factory.mktemp("forks"))
  # The CLIs' own modules define absl flags, which must not meet in one
  # process: the server imports what they import, each child its CLI.
  modules = [
    "mcl.experiments",
    "mcl.experiments.prediction",
    "mcl.analysis.protocol",
    "mcl.analysis.report",
  ]
  # Children inherit the log-mel front end compiled (see _NUMBA_CACHE).
  warm_up = (
    "import numpy as np\n"
    "from mcl.features import audio, logmel\n"
    "noise = np.random.default_rng(0).standard_normal(16_000)\n"
    "logmel.log_mel(noise.astype(np.float32), audio.FeatureConfig())\n"
  )
  with forks.Server(modules, folder, env, warm_up) as s:
    yield s


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


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, tiny_audio_dir, tiny_data_dir):
  """(config, workdir, results) of a finished two-task DEN run of the tiny
  config, through `mcl.experiments.run` (config.json, lock). Read only:
  tests that change it work on a copy."""
  from mcl import experiments

  config = test_config.get_config()
  config.data.source_dir = tiny_audio_dir
  config.data.data_dir = tiny_data_dir
  workdir = str(tmp_path_factory.mktemp("den_run"))
  return config, workdir, experiments.run(config, workdir)


@pytest.fixture(scope="session")
def mtat_from_gtzan(gtzan_dir, tmp_path_factory):
  """An MTAT manual dir whose clips are real GTZAN recordings.

  The full MTAT is not at hand. 40 GTZAN excerpts of `MTAT_GENRES` are laid
  out as `mp3/<folder>/<clip>.mp3` (libsndfile reads them by content) with
  an `annotations_final.csv` in the documented format that tags each with
  its genre and "guitar"; one extra row carries two genre tags (not
  single-label; its file does not exist).
  """
  root = tmp_path_factory.mktemp("mtat_from_gtzan")
  tags = ["guitar", *MTAT_GENRES]
  lines = ["\t".join(["clip_id", *tags, "mp3_path"])]
  for g, genre in enumerate(MTAT_GENRES):
    for i, folder in enumerate(MTAT_FOLDERS):
      path = f"{folder}/{genre}.{i:05d}.mp3"
      os.makedirs(root / "mp3" / folder, exist_ok=True)
      os.symlink(
        os.path.join(gtzan_dir, genre, f"{genre}.{i:05d}.wav"),
        root / "mp3" / path,
      )
      values = ["1" if t in ("guitar", genre) else "0" for t in tags]
      lines.append("\t".join([str(100 * g + i), *values, path]))
  lines.append("\t".join(["999", "0", "1", "1", "0", "0", "0/both.mp3"]))
  (root / "annotations_final.csv").write_text("\n".join(lines) + "\n")
  return str(root)


@pytest.fixture
def compilations():
  """{function name: XLA compilations} while the test runs."""
  with xla_compilations.Compilations() as counted:
    yield counted.counts
