"""Spectrogram patches: the fixed-length windows a pretrained encoder reads.

The musicnn package cuts its log-mel into 187-frame (3 s) patches with a
hop (`extractor.batch_data`'s `overlap`, in frames) and drops the
remainder; a clip shorter than one patch becomes one zero-padded patch
(zero is digital silence in its log10(1 + 10000 x) compression).
"""

import numpy as np


def hop_frames(seconds: float, sample_rate: int, hop_length: int) -> int:
  """A hop in seconds as spectrogram frames (at least 1).

  Args:
    seconds: the hop between patch starts, in seconds.
    sample_rate: the spectrogram's sample rate in Hz.
    hop_length: its frame hop in samples.
  """
  return max(1, int(round(seconds * sample_rate / hop_length)))


def cut(spectrogram: np.ndarray, patch_frames: int, hop: int) -> np.ndarray:
  """Patches starting at 0, hop, 2 hop, ... that fit in the clip.

  Args:
    spectrogram: float32 [frames, bands].
    patch_frames: frames per patch (187 for musicnn).
    hop: frames between patch starts (`patch_frames`: the package's
      consecutive patches).

  Returns:
    float32 [patches, patch_frames, bands], patches = 1 + (frames -
    patch_frames) // hop; one patch zero-padded at its end when the clip
    is shorter than a patch.

  Raises:
    ValueError: `patch_frames` or `hop` below 1, or an empty spectrogram.
  """
  if patch_frames < 1 or hop < 1:
    raise ValueError(f"patch_frames={patch_frames}, hop={hop}: must be >= 1")
  frames = spectrogram.shape[0]
  if frames == 0:
    raise ValueError("an empty spectrogram has no patch")
  if frames < patch_frames:
    spectrogram = np.pad(spectrogram, ((0, patch_frames - frames), (0, 0)))
    frames = patch_frames
  starts = np.arange(0, frames - patch_frames + 1, hop)
  return spectrogram[starts[:, None] + np.arange(patch_frames)[None, :]]
