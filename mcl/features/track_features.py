"""The 518 track-level audio features of the Free Music Archive.

Defferrard et al., "FMA: a dataset for music analysis" (ISMIR 2017) ship,
for every track, librosa statistics in `fma_metadata/features.csv`: eleven
frame-level features (chroma_cens, chroma_cqt, chroma_stft: 12 each;
mfcc: 20; rmse: 1; spectral_bandwidth, spectral_centroid: 1;
spectral_contrast: 7; spectral_rolloff: 1; tonnetz: 6; zcr: 1), each
summarised over time by 7 statistics (kurtosis, max, mean, median, min,
skew, std): 74 x 7 = 518 columns. The columns are sorted as in that file
(feature, then statistic, then number "01", "02", ...), whose three header
rows are exactly these three levels. `track_features` computes them for
any recording, with the dataset's own settings (native sample rate, mono;
STFT 2048 / hop 512; CQT of 7 octaves from C1, 12 bins per octave, hop
512; 20 MFCCs of a power mel spectrogram in dB; 6 contrast bands), so a
labelled folder such as GTZAN gets the same columns and recipe as FMA
(values differ slightly where librosa changed since FMA's 0.5, e.g. the
scale of `rms`).
"""

import librosa
import numpy as np
import scipy.stats

# Frame-level features and their dimensions.
SIZES = {
  "chroma_cens": 12,
  "chroma_cqt": 12,
  "chroma_stft": 12,
  "mfcc": 20,
  "rmse": 1,
  "spectral_bandwidth": 1,
  "spectral_centroid": 1,
  "spectral_contrast": 7,
  "spectral_rolloff": 1,
  "tonnetz": 6,
  "zcr": 1,
}
STATISTICS = ("kurtosis", "max", "mean", "median", "min", "skew", "std")


def columns() -> list[tuple[str, str, str]]:
  """The 518 (feature, statistic, number) columns in `features.csv` order."""
  return [
    (feature, statistic, f"{i + 1:02d}")
    for feature in sorted(SIZES)
    for statistic in STATISTICS
    for i in range(SIZES[feature])
  ]


def _statistics(frames_DxT: np.ndarray) -> dict[str, np.ndarray]:
  """The 7 statistics over time of a [dims, frames] feature."""
  return {
    "kurtosis": scipy.stats.kurtosis(frames_DxT, axis=1),
    "max": np.max(frames_DxT, axis=1),
    "mean": np.mean(frames_DxT, axis=1),
    "median": np.median(frames_DxT, axis=1),
    "min": np.min(frames_DxT, axis=1),
    "skew": scipy.stats.skew(frames_DxT, axis=1),
    "std": np.std(frames_DxT, axis=1),
  }


def frame_features(waveform: np.ndarray, sample_rate: int) -> dict:
  """The eleven frame-level features, {name: float [dims, frames]}.

  Args:
    waveform: float32 [samples], mono, at its native rate.
    sample_rate: in Hz.
  """
  out = {
    "zcr": librosa.feature.zero_crossing_rate(
      waveform, frame_length=2048, hop_length=512
    )
  }
  cqt = np.abs(
    librosa.cqt(
      waveform, sr=sample_rate, hop_length=512, bins_per_octave=12,
      n_bins=7 * 12, tuning=None,
    )
  )  # fmt: skip
  # The CQT has 12 bins per octave; librosa >= 0.6 assumes 36 unless told
  # (FMA used 0.5, whose default was n_chroma): A4 would land on D#.
  out["chroma_cqt"] = librosa.feature.chroma_cqt(
    C=cqt, n_chroma=12, n_octaves=7, bins_per_octave=12
  )
  out["chroma_cens"] = librosa.feature.chroma_cens(
    C=cqt, n_chroma=12, n_octaves=7, bins_per_octave=12
  )
  out["tonnetz"] = librosa.feature.tonnetz(chroma=out["chroma_cens"])
  stft = np.abs(librosa.stft(waveform, n_fft=2048, hop_length=512))
  out["chroma_stft"] = librosa.feature.chroma_stft(S=stft**2, n_chroma=12)
  out["rmse"] = librosa.feature.rms(S=stft)
  out["spectral_centroid"] = librosa.feature.spectral_centroid(S=stft)
  out["spectral_bandwidth"] = librosa.feature.spectral_bandwidth(S=stft)
  out["spectral_contrast"] = librosa.feature.spectral_contrast(
    S=stft, n_bands=6
  )
  out["spectral_rolloff"] = librosa.feature.spectral_rolloff(S=stft)
  mel = librosa.feature.melspectrogram(sr=sample_rate, S=stft**2)
  out["mfcc"] = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=20)
  return out


def track_features(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
  """FMA's 518 features of one recording, in `columns()` order.

  Args:
    waveform: float32 [samples], mono, at its native rate (FMA computes
      them without resampling).
    sample_rate: in Hz.

  Returns:
    float32 [518].

  Raises:
    ValueError: a frame-level feature has an unexpected dimension.
  """
  frames = frame_features(waveform, sample_rate)
  values = {}
  for name, feature in frames.items():
    if feature.shape[0] != SIZES[name]:
      raise ValueError(f"{name}: {feature.shape[0]} dims, not {SIZES[name]}")
    for statistic, value in _statistics(feature).items():
      values[name, statistic] = value
  return np.asarray(
    [values[f, s][int(n) - 1] for f, s, n in columns()], np.float32
  )
