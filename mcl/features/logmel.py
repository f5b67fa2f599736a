"""The log-mel front ends and MFCC: float32 waveforms to float32 features.

`log_mel` is the configurable one (dB; `mcl.features.audio.FeatureConfig`),
`vggish_log_mel` and `musicnn_log_mel` reproduce the fixed front ends
pretrained models were trained with (their constants below); `mfcc` is
computed from a log-mel in dB. The filter banks, STFT and DCT are
librosa's. Inputs are checked waveforms (`mcl.features.audio`); nothing
here checks its input or output.
"""

from typing import TYPE_CHECKING

import librosa
import numpy as np

if TYPE_CHECKING:
  from mcl.features import audio

# VGGish's front end (Hershey et al. 2017; the AudioSet release's
# `vggish_params.py` and `mel_features.py`): 25 ms periodic-Hann windows
# every 10 ms, no centring, FFT 512, magnitude, 64 HTK-mel bands 125-7500 Hz,
# natural log of mel + 0.01; 96-frame (0.96 s) patches.
VGGISH_SAMPLE_RATE = 16_000
VGGISH_WINDOW = 400
VGGISH_HOP = 160
VGGISH_N_FFT = 512
VGGISH_BANDS = 64
VGGISH_PATCH_FRAMES = 96
# The musicnn package's front end (Pons & Serra 2019, `extractor.py`):
# librosa power mel (Hann 512, hop 256, centred, 96 Slaney bands 0-8 kHz),
# log10(1 + 10000 mel); 187-frame (3 s) patches.
MUSICNN_SAMPLE_RATE = 16_000
MUSICNN_N_FFT = 512
MUSICNN_HOP = 256
MUSICNN_BANDS = 96
MUSICNN_PATCH_FRAMES = 187


def log_mel(waveform: np.ndarray, config: "audio.FeatureConfig") -> np.ndarray:
  """Log-magnitude mel spectrogram.

  Power mel spectrogram (Hann window, centred frames, Slaney mel scale) in
  dB relative to 1.0, floored at `config.top_db` below the clip's peak.

  Args:
    waveform: float32 [samples] at `config.sample_rate` Hz.
    config: front-end parameters.

  Returns:
    float32 [frames, n_mels] in dB, frames = 1 + samples // hop_length.
  """
  power = librosa.feature.melspectrogram(
    y=waveform,
    sr=config.sample_rate,
    n_fft=config.n_fft,
    hop_length=config.hop_length,
    n_mels=config.n_mels,
    fmin=config.f_min,
    fmax=config.f_max,
    power=2.0,
  )
  db = librosa.power_to_db(power, ref=1.0, top_db=config.top_db)
  return db.T.astype(np.float32)


def vggish_log_mel(waveform: np.ndarray) -> np.ndarray:
  """VGGish's log-mel spectrogram (its `waveform_to_examples` before the
  framing into patches).

  Magnitude STFT (librosa: 400-sample periodic Hann window inside a 512
  FFT, hop 160, no centring), HTK mel filters without area normalisation
  (librosa; VGGish's own `spectrogram_to_mel_matrix` draws the triangles
  on the mel axis rather than in Hz: weights differ by at most 0.0044,
  log-mel by 0.014 nats on white noise), log(mel + 0.01).

  Args:
    waveform: float32 [samples] at 16 kHz.

  Returns:
    float32 [1 + (samples - 400) // 160, 64] in nats (0 frames when
    shorter than one window).
  """
  if waveform.shape[0] < VGGISH_WINDOW:
    return np.zeros((0, VGGISH_BANDS), np.float32)
  magnitude = np.abs(
    librosa.stft(
      waveform,
      n_fft=VGGISH_N_FFT,
      hop_length=VGGISH_HOP,
      win_length=VGGISH_WINDOW,
      window="hann",
      center=False,
    )
  )
  mel = librosa.filters.mel(
    sr=VGGISH_SAMPLE_RATE,
    n_fft=VGGISH_N_FFT,
    n_mels=VGGISH_BANDS,
    fmin=125.0,
    fmax=7500.0,
    htk=True,
    norm=None,
  )
  return np.log(mel @ magnitude + 0.01).T.astype(np.float32)


def musicnn_log_mel(waveform: np.ndarray) -> np.ndarray:
  """The musicnn package's log-compressed mel spectrogram (`batch_data` of
  its `extractor.py`, before the framing into patches).

  Power mel spectrogram (librosa: Hann 512, hop 256, centred frames, 96
  Slaney mel bands 0-8000 Hz), then log10(1 + 10000 mel) in float32. The
  package casts the mel to float16 first, which under NumPy >= 2 keeps
  the log in float16: 10000 x overflows to inf on loud bins and every
  patch's taggram becomes one row (upstream jordipons/musicnn #2, #20).
  Under the NumPy the models were trained with, the log was float32, as
  here.

  Args:
    waveform: float32 [samples] at 16 kHz.

  Returns:
    float32 [1 + samples // 256, 96], >= 0.
  """
  power = librosa.feature.melspectrogram(
    y=waveform,
    sr=MUSICNN_SAMPLE_RATE,
    n_fft=MUSICNN_N_FFT,
    hop_length=MUSICNN_HOP,
    n_mels=MUSICNN_BANDS,
  )
  return np.log10(1.0 + 10000.0 * power.T.astype(np.float32))


def mfcc(log_mel_db: np.ndarray, n_mfcc: int = 20) -> np.ndarray:
  """Mel-frequency cepstral coefficients from a log-mel spectrogram.

  Args:
    log_mel_db: float32 [frames, n_mels] in dB, as from `log_mel`.
    n_mfcc: number of coefficients (type-II orthonormal DCT over mels).

  Returns:
    float32 [frames, n_mfcc].
  """
  coefficients = librosa.feature.mfcc(S=log_mel_db.T, n_mfcc=n_mfcc)
  return coefficients.T.astype(np.float32)
