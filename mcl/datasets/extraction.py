"""Parallel featurisation of audio files, shared by the manual-download
builders (MagnaTagATune, FMA) and the track-feature tables.

Files are decoded and featurised (`mcl.features.audio`) in spawn-started worker
processes (forking a process that holds TensorFlow's threads can hang),
in windows of `WINDOW` files: `Executor.map` submits its whole input at
once, so finished features would pile up in memory if the record writer
fell behind. A tqdm bar counts the files.
"""

import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds
import tqdm
from absl import logging

from mcl.features import audio

# Files given to the worker processes at a time.
WINDOW = 512


def prepare(
  builder_class: type,
  config,
  manual_dir: str,
  data_dir: str,
  num_workers: int | None,
  check_manual_dir: Callable[[], None],
):
  """Builds (or reuses) the records of a manual-download builder.

  Args:
    builder_class: a `tfds.core.GeneratorBasedBuilder` taking `num_workers`
      and writing its skipped files to `info.metadata["skipped"]`.
    config: its builder config (a registered one is passed by name: TFDS
      refuses an equal object).
    manual_dir: the download.
    data_dir: TFDS data directory where the records are written.
    num_workers: feature processes (None: all cores).
    check_manual_dir: raises when the download lacks a piece; called only
      when the records are not built yet.

  Returns:
    The prepared builder; its build report is logged.
  """
  registered = config.name in builder_class.builder_configs
  builder = builder_class(
    config=config.name if registered else config,
    data_dir=data_dir,
    num_workers=num_workers,
  )
  if not builder.is_prepared():
    check_manual_dir()
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
  )
  skipped = builder.info.metadata.get("skipped", [])
  logging.info(
    "%s %s: %s examples, %d skipped%s",
    builder_class.name,
    config.name,
    {k: v.num_examples for k, v in builder.info.splits.items()},
    len(skipped),
    "".join(
      f"\n  {s.get('path', s.get('track_id'))}: {s['problem']}" for s in skipped
    ),
  )
  return builder


def featurise(
  path: str, features: audio.FeatureConfig, waveform: bool
) -> tuple[dict[str, np.ndarray] | None, str | None]:
  """Worker: ({"log_mel"[, "waveform"]}, None) or (None, problem).

  "log_mel" is `audio.clip_features` (float32 [frames, n_mels], finite);
  "waveform" the int16 PCM at `features.sample_rate`. The problem is an
  `audio.AudioError`'s (which does not survive pickling). The checks are
  `audio.file_log_mel`'s; this also keeps the waveform.
  """
  try:
    signal = audio.load_audio(path, features.sample_rate)
    audio.check_audio(path, signal, features)
    out = {"log_mel": audio.clip_features(path, signal, features)}
  except audio.AudioError as e:
    return None, e.problem
  if waveform:
    out["waveform"] = audio.to_pcm16(signal)
  return out, None


def parallel_map(
  fn: Callable,
  items: Sequence,
  num_workers: int | None,
  description: str,
  *constants,
) -> Iterator[tuple[int, object]]:
  """`fn(item, *constants)` of every item, in order, in worker processes.

  Args:
    fn: a picklable module-level function.
    items: its first arguments.
    num_workers: processes (None: all cores).
    description: the progress bar's label.
    *constants: further arguments, the same for every item.

  Yields:
    (index into `items`, result).

  The first item is computed in this process, before the workers start:
  numba compiles librosa's functions once, here, into its cache, and the
  workers load them. Workers compiling them at once into an empty cache
  can write mismatched gufunc files and die of a segfault (numba issue
  #10128; seen here in a fresh venv).
  """
  if not items:
    return
  with tqdm.tqdm(total=len(items), desc=description) as progress:
    first = fn(items[0], *constants)
    progress.update()
    yield 0, first
    yield from _in_workers(fn, items, num_workers, constants, progress)


def _in_workers(fn, items, num_workers, constants, progress):
  """`parallel_map` of `items[1:]` in spawned worker processes."""
  with concurrent.futures.ProcessPoolExecutor(
    num_workers or os.cpu_count(),
    mp_context=multiprocessing.get_context("spawn"),
  ) as pool:
    for start in range(1, len(items), WINDOW):
      window = items[start : start + WINDOW]
      results = pool.map(
        fn,
        window,
        *([c] * len(window) for c in constants),
        chunksize=4,
      )
      for offset, result in enumerate(results):
        progress.update()
        yield start + offset, result


def featurise_all(
  paths: Sequence[str],
  features: audio.FeatureConfig,
  waveform: bool,
  num_workers: int,
  description: str,
) -> Iterator[tuple[int, dict[str, np.ndarray] | None, str | None]]:
  """`featurise` of every path, in order, in worker processes.

  Args:
    paths: audio files.
    features: the front end (`audio.FeatureConfig`).
    waveform: also return the int16 waveform.
    num_workers: processes.
    description: the progress bar's label.

  Yields:
    (index into `paths`, features or None, problem or None).
  """
  for i, (out, problem) in parallel_map(
    featurise, paths, num_workers, description, features, waveform
  ):
    yield i, out, problem
