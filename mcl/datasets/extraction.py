"""Parallel featurisation of audio files, shared by the manual-download
builders (MagnaTagATune, FMA).

Files are decoded and featurised (`mcl.audio`) in spawn-started worker
processes (forking a process that holds TensorFlow's threads can hang),
in windows of `WINDOW` files: `Executor.map` submits its whole input at
once, so finished features would pile up in memory if the record writer
fell behind. A tqdm bar counts the files.
"""

import concurrent.futures
import multiprocessing
from collections.abc import Iterator, Sequence

import numpy as np
import tqdm

from mcl import audio

# Files given to the worker processes at a time.
WINDOW = 512


def featurise(
  path: str, features: audio.FeatureConfig, waveform: bool
) -> tuple[dict[str, np.ndarray] | None, str | None]:
  """Worker: ({"log_mel"[, "waveform"]}, None) or (None, problem).

  "log_mel" is `audio.features` (float32 [frames, n_mels]); "waveform" the
  int16 PCM at `features.sample_rate`. The problem is an
  `audio.AudioError`'s (which does not survive pickling).
  """
  try:
    signal = audio.load_audio(path, features.sample_rate)
    audio.check_audio(path, signal, features)
  except audio.AudioError as e:
    return None, e.problem
  out = {"log_mel": audio.features(signal, features)}
  if waveform:
    out["waveform"] = audio.to_pcm16(signal)
  return out, None


def featurise_all(
  paths: Sequence[str],
  features: audio.FeatureConfig,
  waveform: bool,
  num_workers: int,
  description: str,
) -> Iterator[tuple[int, dict[str, np.ndarray] | None, str | None]]:
  """`featurise` of every path, in order, in worker processes.

  Yields:
    (index into `paths`, features or None, problem or None).
  """
  with (
    concurrent.futures.ProcessPoolExecutor(
      num_workers, mp_context=multiprocessing.get_context("spawn")
    ) as pool,
    tqdm.tqdm(total=len(paths), desc=description) as progress,
  ):
    for start in range(0, len(paths), WINDOW):
      window = paths[start : start + WINDOW]
      results = pool.map(
        featurise,
        window,
        [features] * len(window),
        [waveform] * len(window),
        chunksize=4,
      )
      for offset, (out, problem) in enumerate(results):
        progress.update()
        yield start + offset, out, problem
