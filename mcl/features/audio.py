"""Audio decoding, its checks, and the front end's settings: numpy in and out.

Decoding uses soundfile (libsndfile: WAV, FLAC, Ogg Vorbis/Opus, MP3, AIFF,
AU, CAF, ...) and resampling soxr through librosa; the log-mel front ends
themselves are `mcl.features.logmel`'s, chosen by `FeatureConfig`. Every
decoded sample is checked (finite, not absurdly loud) before any library
sees it, and every feature of a file before it is stored or scored
(`file_log_mel`). This module knows nothing of JAX or TensorFlow.
"""

import dataclasses
import math
import os

import librosa
import numpy as np
import soundfile

from mcl.features import logmel
from mcl.runtime import errors

# File extensions of libsndfile's formats. Left out: RAW (headerless: its
# sample format cannot be read from the file) and MAT4/MAT5 (.mat files
# are rarely audio).
_FORMAT_EXTENSIONS = {
  "WAV": (".wav", ".wave"),
  "WAVEX": (".wav",),
  "RF64": (".rf64",),
  "W64": (".w64",),
  "FLAC": (".flac",),
  "OGG": (".ogg", ".oga"),
  "MP3": (".mp3", ".mp2", ".mpga"),  # MPEG-1/2 layers I-III.
  "AIFF": (".aiff", ".aif", ".aifc"),
  "AU": (".au", ".snd"),
  "CAF": (".caf",),
  "NIST": (".nist", ".sph"),
  "IRCAM": (".sf",),
  "VOC": (".voc",),
  "SD2": (".sd2",),
  "PAF": (".paf",),
  "SVX": (".iff", ".svx"),
  "AVR": (".avr",),
  "HTK": (".htk",),
  "SDS": (".sds",),
  "XI": (".xi",),
  "WVE": (".wve",),
  "PVF": (".pvf",),
  "MPC2K": (".mpc2k",),
}


def _extensions() -> tuple[str, ...]:
  formats = soundfile.available_formats()
  found = {
    extension
    for name, extensions in _FORMAT_EXTENSIONS.items()
    if name in formats
    for extension in extensions
  }
  if "OGG" in formats and "OPUS" in soundfile.available_subtypes("OGG"):
    found.add(".opus")
  return tuple(sorted(found))


# Every extension the installed libsndfile decodes (lower case, sorted).
AUDIO_EXTENSIONS = _extensions()


class AudioError(ValueError):
  """An audio file that cannot be turned into features.

  Attributes:
    path: the offending file.
    problem: what is wrong with it, in words.
  """

  def __init__(self, path: str, problem: str):
    super().__init__(f"{path}: {problem}")
    self.path = path
    self.problem = problem


# Loudest decoded sample accepted, in dBFS (x1000 full scale). Integer PCM
# decodes into [-1, 1] and float formats may go somewhat over full scale
# (a 32-bit float recorder keeps peaks above 0 dBFS, a mix may clip by a
# few dB), but nothing musical is 60 dB over it: such a file is damaged,
# or integer PCM stored as float (16-bit values are +90 dBFS). Its log-mel
# would lie far outside anything learnt, and at 1e30 the power spectrum
# overflows float32 to inf and the features are all NaN.
MAX_PEAK_DBFS = 60.0


def _check_samples(path: str, samples: np.ndarray, sample_rate: int):
  """Rejects non-finite samples and absurd amplitudes.

  Args:
    path: the file the samples came from (for the error message).
    samples: float [samples] or [samples, channels].
    sample_rate: their rate in Hz (to say where the first bad one is).

  Raises:
    AudioError: a NaN or infinite sample, or a peak above `MAX_PEAK_DBFS`.
  """
  finite = np.isfinite(samples)
  if not np.all(finite):
    bad = ~finite.reshape(samples.shape[0], -1).all(axis=1)
    raise AudioError(
      path,
      f"non-finite samples: {int(np.isnan(samples).sum())} NaN and "
      f"{int(np.isinf(samples).sum())} infinite of {samples.size}, the "
      f"first at {np.argmax(bad) / sample_rate:.2f} s (a damaged float file)",
    )
  peak = float(np.max(np.abs(samples))) if samples.size else 0.0
  peak_db = 20.0 * np.log10(max(peak, 1e-12))
  if peak_db > MAX_PEAK_DBFS:
    raise AudioError(
      path,
      f"absurd amplitude: peak {peak:.3g} ({peak_db:+.1f} dBFS) > "
      f"{MAX_PEAK_DBFS:+.1f} dBFS; decoded audio lies near [-1, 1] (a "
      "damaged float file, or integer PCM stored as float)",
    )


FRONT_ENDS = ("log_mel", "vggish", "musicnn")
# (sample rate in Hz, mel bands) the fixed front ends were trained with.
_FIXED_FRONT_ENDS = {
  "vggish": (logmel.VGGISH_SAMPLE_RATE, logmel.VGGISH_BANDS),
  "musicnn": (logmel.MUSICNN_SAMPLE_RATE, logmel.MUSICNN_BANDS),
}


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
  """Parameters of the log-mel front end (defaults of Won et al. 2020).

  Attributes:
    front_end: "log_mel" (the fields below, dB), "vggish" (VGGish's
      fixed front end, `logmel.vggish_log_mel`; needs sample_rate 16000
      and n_mels 64; the other spectral fields are unused) or "musicnn"
      (the musicnn package's, `logmel.musicnn_log_mel`; needs sample_rate
      16000 and n_mels 96).
    sample_rate: target sample rate in Hz.
    n_fft: FFT window length in samples.
    hop_length: hop between frames in samples (62.5 frames/s at 16 kHz).
    n_mels: number of mel bands.
    f_min: lowest mel band edge in Hz.
    f_max: highest mel band edge in Hz.
    top_db: dynamic range kept below the clip's peak, in dB.
    min_seconds: clips shorter than this (after decoding) are rejected;
      a longer clip shorter than a chunk or patch is zero-padded to one
      (`load_clip`).
    silence_db: clips whose peak sample level is below this, in dBFS, are
      digital silence and rejected (see `check_audio`).
  """

  sample_rate: int = 16_000
  n_fft: int = 512
  hop_length: int = 256
  n_mels: int = 128
  f_min: float = 0.0
  f_max: float = 8_000.0
  top_db: float = 80.0
  min_seconds: float = 1.0
  silence_db: float = -80.0
  front_end: str = "log_mel"

  def __post_init__(self):
    if self.front_end not in FRONT_ENDS:
      raise errors.UserError(
        f"front_end {self.front_end!r} not in {FRONT_ENDS}"
      )
    fixed = _FIXED_FRONT_ENDS.get(self.front_end)
    if fixed and (self.sample_rate, self.n_mels) != fixed:
      raise errors.UserError(
        f"the {self.front_end} front end needs sample_rate {fixed[0]} and "
        f"n_mels {fixed[1]}, got {self.sample_rate} and {self.n_mels}"
      )


def load_audio(path: str, sample_rate: int) -> np.ndarray:
  """Decodes a file, mixes it to mono and resamples it.

  The decoded samples are checked before they are mixed or resampled
  (soxr refuses a non-finite buffer, which would abort a whole batch).

  Args:
    path: a file in one of the formats of `AUDIO_EXTENSIONS` (the format
      is read from the contents, not the extension).
    sample_rate: target sample rate in Hz.

  Returns:
    float32 waveform of shape [samples] at `sample_rate`: in [-1, 1] for
    integer PCM, possibly beyond for float formats (at most
    `MAX_PEAK_DBFS`). The length is the decoded one; header durations are
    not trusted.

  Raises:
    AudioError: the file is missing, a folder, empty, undecodable (not
      audio, or too damaged to open: its size is in the message), has a
      NaN or infinite sample, or peaks above `MAX_PEAK_DBFS` dBFS.
  """
  if not os.path.exists(path):
    raise AudioError(path, "file does not exist")
  if not os.path.isfile(path):
    raise AudioError(path, "not a regular file")
  size = os.path.getsize(path)
  if size == 0:
    raise AudioError(path, "file is empty (0 bytes)")
  try:
    waveform, source_rate = soundfile.read(
      path, dtype="float32", always_2d=True
    )
  except (soundfile.LibsndfileError, RuntimeError, EOFError) as e:
    # libsndfile says "File does not exist" of any file it cannot open.
    raise AudioError(
      path,
      f"undecodable: {size} bytes that libsndfile cannot read as audio "
      "(truncated, corrupt, or not an audio file)",
    ) from e
  if waveform.shape[0] == 0:
    raise AudioError(
      path, f"undecodable: {size} bytes that decode to zero samples"
    )
  _check_samples(path, waveform, source_rate)
  mono = waveform.mean(axis=1)
  if source_rate != sample_rate:
    mono = librosa.resample(
      mono, orig_sr=source_rate, target_sr=sample_rate, res_type="soxr_hq"
    )
  return mono.astype(np.float32)


def to_pcm16(waveform: np.ndarray) -> np.ndarray:
  """int16 PCM of a float waveform in [-1, 1] (clipped, rounded; the
  stored form of waveform records, read back as pcm / 32767)."""
  return np.round(np.clip(waveform, -1.0, 1.0) * 32767.0).astype(np.int16)


def check_audio(path: str, waveform: np.ndarray, config: FeatureConfig):
  """Rejects audio too short to classify, or digital silence.

  Silence is judged by the peak sample, not the RMS: a recording is
  silent when no sample reaches `config.silence_db` dBFS (default -80,
  about 3 steps of 16-bit PCM), i.e. zeros, dither or codec noise. Quiet
  music passes: a piano intro at -67 dBFS RMS still peaks near -50 dBFS,
  which an RMS threshold of -60 dB wrongly rejected.

  Args:
    path: the file the waveform came from (for the error message).
    waveform: float32 [samples] at `config.sample_rate`.
    config: gives `min_seconds` and `silence_db`.

  Raises:
    AudioError: shorter than `config.min_seconds` (a truncated file
      usually shows here), non-finite samples, a peak above
      `MAX_PEAK_DBFS` or below `config.silence_db` dBFS.
  """
  seconds = waveform.shape[0] / config.sample_rate
  if seconds < config.min_seconds:
    raise AudioError(
      path,
      f"too short: decodes to {seconds:.2f} s < {config.min_seconds:.2f} s "
      "(a short clip, or a truncated file)",
    )
  _check_samples(path, waveform, config.sample_rate)
  peak = float(np.max(np.abs(waveform)))
  peak_db = 20.0 * np.log10(max(peak, 1e-12))
  if peak_db < config.silence_db:
    raise AudioError(
      path,
      f"digital silence: peak {peak_db:.1f} dBFS < {config.silence_db:.1f} "
      "dBFS",
    )


def features(waveform: np.ndarray, config: FeatureConfig) -> np.ndarray:
  """The front end of `config.front_end` (`mcl.features.logmel`): `log_mel`
  (dB), `vggish_log_mel` (nats) or `musicnn_log_mel` (log10); float32
  [frames, n_mels]."""
  if config.front_end == "vggish":
    return logmel.vggish_log_mel(waveform)
  if config.front_end == "musicnn":
    return logmel.musicnn_log_mel(waveform)
  return logmel.log_mel(waveform, config)


def clip_features(
  path: str, waveform: np.ndarray, config: FeatureConfig
) -> np.ndarray:
  """`features` of one file's checked waveform, themselves checked.

  Args:
    path: the file the waveform came from (for the error message).
    waveform: float32 [samples] at `config.sample_rate` Hz, as passed by
      `check_audio`.
    config: front-end parameters.

  Returns:
    float32 [frames, n_mels], every value finite.

  Raises:
    AudioError: a non-finite feature (never stored as a record, nor
      scored).
  """
  values = features(waveform, config)
  finite = np.isfinite(values)
  if not np.all(finite):
    raise AudioError(
      path,
      f"non-finite features: {int(finite.size - finite.sum())} of "
      f"{finite.size} {config.front_end} values are NaN or infinite",
    )
  return values


@dataclasses.dataclass(frozen=True)
class Clip:
  """A decoded, checked clip.

  Attributes:
    waveform: float32 [samples] at the config's sample rate, zero-padded
      to the asked length.
    seconds: its decoded length in seconds, before padding.
    padded: True when zeros were appended.
  """

  waveform: np.ndarray
  seconds: float
  padded: bool


def load_clip(
  path: str, config: FeatureConfig, pad_seconds: float = 0.0
) -> Clip:
  """Decodes and checks one file, zero-padded to at least `pad_seconds`.

  A clip shorter than one chunk or patch (but not shorter than
  `config.min_seconds`) is scored as the front ends score a short clip:
  digital silence appended at its end, so that its features are those of
  the clip followed by silence (not a dB floor, nor a stretched clip).

  Args:
    path: audio file.
    config: front-end parameters (`sample_rate`, the checks').
    pad_seconds: the length in seconds a shorter clip is padded to (0: no
      padding).

  Returns:
    The `Clip`, its waveform at `config.sample_rate` Hz.

  Raises:
    AudioError: see `load_audio` and `check_audio` (a clip under
      `config.min_seconds` is "too short", never padded).
  """
  waveform = load_audio(path, config.sample_rate)
  check_audio(path, waveform, config)
  seconds = waveform.shape[0] / config.sample_rate
  missing = int(math.ceil(pad_seconds * config.sample_rate)) - waveform.shape[0]
  if missing <= 0:
    return Clip(waveform, seconds, False)
  return Clip(np.pad(waveform, (0, missing)), seconds, True)


def file_log_mel(
  path: str, config: FeatureConfig, pad_seconds: float = 0.0
) -> np.ndarray:
  """Decodes, checks, pads and featurises one file.

  Args:
    path: audio file.
    config: front-end parameters.
    pad_seconds: a shorter clip is zero-padded to this length, in seconds
      (`load_clip`).

  Returns:
    float32 [frames, n_mels]: `features` of the decoded file, finite.

  Raises:
    AudioError: the file is corrupt, empty, too short, silent, has
      non-finite or absurdly loud samples, or non-finite features (see
      `load_audio`, `check_audio` and `clip_features`).
  """
  return clip_features(
    path, load_clip(path, config, pad_seconds).waveform, config
  )
