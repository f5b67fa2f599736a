import csv
import hashlib
import os
import shutil

import librosa
import numpy as np
import pytest
import soundfile

from mcl.features import audio, logmel
from tests.conftest import GTZAN, MTAT_CLIP

CONFIG = audio.FeatureConfig()


def _manifest_row(path):
  with open(os.path.join(GTZAN, "manifest.csv")) as f:
    for row in csv.DictReader(f):
      if row["path"].endswith(os.path.relpath(path, GTZAN)):
        return row
  raise KeyError(path)


def test_log_mel_of_real_excerpt(gtzan_dir):
  path = os.path.join(gtzan_dir, "country", "country.00000.wav")
  with open(path, "rb") as f:
    assert hashlib.md5(f.read()).hexdigest() == _manifest_row(path)["md5"]
  native, native_rate = soundfile.read(path)
  assert native_rate == 22_050

  features = audio.file_log_mel(path, CONFIG)

  samples = int(np.ceil(len(native) * 16_000 / 22_050))
  assert features.dtype == np.float32
  assert features.shape == (1 + samples // 256, 128)
  assert np.all(np.isfinite(features))
  # dB relative to 1.0, floored 80 dB under the clip's peak.
  assert features.max() - features.min() == pytest.approx(80.0, abs=1e-3)
  assert -40.0 < features.max() < 60.0
  # Music has most energy below 1 kHz: low bands beat the top bands.
  assert features[:, :40].mean() > features[:, -20:].mean() + 10.0


def test_log_mel_peaks_at_the_tone_frequency():
  t = np.arange(16_000 * 4) / 16_000
  tone = (0.5 * np.sin(2 * np.pi * 1_000.0 * t)).astype(np.float32)
  features = logmel.log_mel(tone, CONFIG)
  centres = librosa.mel_frequencies(n_mels=130, fmin=0.0, fmax=8_000.0)[1:-1]
  peak = np.argmax(features.mean(axis=0))
  assert abs(centres[peak] - 1_000.0) < 60.0


def test_mfcc_shape(gtzan_dir):
  features = audio.file_log_mel(
    os.path.join(gtzan_dir, "jazz", "jazz.00003.wav"), CONFIG
  )
  coefficients = logmel.mfcc(features, n_mfcc=20)
  assert coefficients.shape == (features.shape[0], 20)
  assert np.all(np.isfinite(coefficients))


def test_mp3_decodes_to_its_true_length():
  if not os.path.exists(MTAT_CLIP):
    pytest.skip("MTAT sample absent")
  waveform = audio.load_audio(MTAT_CLIP, 16_000)
  assert waveform.shape == (465_984,)


@pytest.mark.parametrize(
  "make, problem",
  [
    (lambda p: open(p, "wb").close(), "empty"),
    (
      lambda p: open(p, "wb").write(os.urandom(4096)),
      "undecodable: 4096 bytes",
    ),
    (
      lambda p: soundfile.write(p, np.full(8_000, 0.1, np.float32), 16_000),
      "too short",
    ),
    (
      lambda p: soundfile.write(p, np.zeros(16_000 * 5, np.float32), 16_000),
      "digital silence",
    ),
  ],
)
def test_bad_audio_raises_naming_file_and_problem(tmp_path, make, problem):
  path = str(tmp_path / "bad.wav")
  make(path)
  with pytest.raises(audio.AudioError, match=problem) as info:
    audio.file_log_mel(path, CONFIG)
  assert info.value.path == path
  assert path in str(info.value)


def test_truncated_wav_is_rejected_or_decoded_short(gtzan_dir, tmp_path):
  path = str(tmp_path / "truncated.wav")
  shutil.copy(os.path.join(gtzan_dir, "pop", "pop.00000.wav"), path)
  with open(path, "r+b") as f:
    f.truncate(2_000)
  with pytest.raises(audio.AudioError, match="too short"):
    audio.file_log_mel(path, CONFIG)


def test_missing_file_and_folder_are_named_as_such(tmp_path):
  with pytest.raises(audio.AudioError, match="does not exist"):
    audio.load_audio(str(tmp_path / "absent.mp3"), 16_000)
  with pytest.raises(audio.AudioError, match="not a regular file"):
    audio.load_audio(str(tmp_path), 16_000)


def test_truncated_mp3_is_named_short_or_undecodable(tmp_path):
  if not os.path.exists(MTAT_CLIP):
    pytest.skip("MTAT sample absent")
  path = str(tmp_path / "truncated.mp3")
  with open(MTAT_CLIP, "rb") as f, open(path, "wb") as out:
    out.write(f.read(1024))
  with pytest.raises(audio.AudioError) as info:
    audio.file_log_mel(path, CONFIG)
  assert "does not exist" not in info.value.problem
  assert info.value.problem.startswith(("too short", "undecodable"))


def _at_rms_db(waveform, rms_db):
  rms = np.sqrt(np.mean(np.square(waveform, dtype=np.float64)))
  return (waveform * (10 ** (rms_db / 20) / rms)).astype(np.float32)


def test_quiet_music_passes_and_digital_silence_fails(gtzan_dir):
  # A real excerpt attenuated to -67 dBFS RMS, like a quiet piano intro.
  waveform = audio.load_audio(
    os.path.join(gtzan_dir, "classical", "classical.00000.wav"), 16_000
  )
  quiet = _at_rms_db(waveform, -67.0)
  audio.check_audio("quiet.wav", quiet, CONFIG)  # Does not raise.
  assert np.all(np.isfinite(logmel.log_mel(quiet, CONFIG)))
  with pytest.raises(audio.AudioError, match="digital silence"):
    audio.check_audio("zeros.wav", np.zeros_like(waveform), CONFIG)
  # 16-bit dither (+-1 step) is silence too.
  rng = np.random.default_rng(0)
  dither = rng.integers(-1, 2, waveform.shape).astype(np.float32) / 32768
  with pytest.raises(audio.AudioError, match="digital silence"):
    audio.check_audio("dither.wav", dither, CONFIG)


def test_every_extension_libsndfile_reads_is_accepted(gtzan_dir, tmp_path):
  assert {".wav", ".flac", ".ogg", ".oga", ".mp3"} <= set(
    audio.AUDIO_EXTENSIONS
  )
  waveform = audio.load_audio(
    os.path.join(gtzan_dir, "jazz", "jazz.00001.wav"), 16_000
  )
  path = str(tmp_path / "vorbis.oga")  # Ogg Vorbis under its other name.
  soundfile.write(path, waveform, 16_000, format="OGG", subtype="VORBIS")
  decoded = audio.load_audio(path, 16_000)
  assert abs(len(decoded) - len(waveform)) < 16_000 // 100


# Damaged float32 WAVs of a real clip (one NaN sample, one infinite
# sample, scaled to 1e30): name -> how its `AudioError.problem` starts.
DAMAGED_FLOAT_WAVS = {
  "nan_sample.wav": "non-finite samples",
  "inf_sample.wav": "non-finite samples",
  "loud_1e30.wav": "absurd amplitude",
}


def write_damaged_float_wavs(gtzan_dir, folder, seconds=4.0):
  """The files of `DAMAGED_FLOAT_WAVS` in `folder`, made from the first
  `seconds` of a real GTZAN clip at its 22.05 kHz (so a good copy would
  be resampled), as 32-bit float WAVs. Returns {name: path}."""
  source = os.path.join(gtzan_dir, "rock", "rock.00009.wav")
  clip, rate = soundfile.read(
    source, dtype="float32", frames=int(seconds * 22_050)
  )
  middle = clip.shape[0] // 2
  nan, inf = clip.copy(), clip.copy()
  nan[middle] = np.nan
  inf[middle] = np.inf
  samples = {
    "nan_sample.wav": nan,
    "inf_sample.wav": inf,
    "loud_1e30.wav": clip * np.float32(1e30),
  }
  paths = {}
  for name, values in samples.items():
    paths[name] = os.path.join(folder, name)
    soundfile.write(paths[name], values, rate, subtype="FLOAT")
  return paths


@pytest.mark.parametrize("name", sorted(DAMAGED_FLOAT_WAVS))
def test_damaged_float_samples_are_named_before_resampling(
  gtzan_dir, tmp_path, name
):
  path = write_damaged_float_wavs(gtzan_dir, str(tmp_path))[name]
  # libsndfile hands the damage on as it is: the check is mcl's.
  decoded, rate = soundfile.read(path, dtype="float32")
  assert rate == 22_050 and decoded.dtype == np.float32
  assert not np.all(np.isfinite(decoded)) or np.abs(decoded).max() > 1e29
  problem = DAMAGED_FLOAT_WAVS[name]
  for front_end in audio.FRONT_ENDS:
    bands = logmel.MUSICNN_BANDS if front_end == "musicnn" else 64
    config = audio.FeatureConfig(n_mels=bands, front_end=front_end)
    with pytest.raises(audio.AudioError, match=problem) as info:
      audio.file_log_mel(path, config)
    assert info.value.path == path
    assert info.value.problem.startswith(problem)
  with pytest.raises(audio.AudioError, match=problem):
    audio.load_audio(path, 16_000)
  with pytest.raises(audio.AudioError, match=problem):
    audio.load_audio(path, 22_050)  # No resampling: still refused.


def test_non_finite_sample_is_located(gtzan_dir, tmp_path):
  path = write_damaged_float_wavs(gtzan_dir, str(tmp_path))["nan_sample.wav"]
  with pytest.raises(audio.AudioError) as info:
    audio.load_audio(path, 16_000)
  assert "1 NaN and 0 infinite of 88200, the first at 2.00 s" in str(info.value)


def test_float_audio_somewhat_over_full_scale_is_music(gtzan_dir, tmp_path):
  source = os.path.join(gtzan_dir, "rock", "rock.00009.wav")
  clip, rate = soundfile.read(source, dtype="float32", frames=4 * 22_050)
  path = str(tmp_path / "hot.wav")
  # +24 dB over the clip: past 0 dBFS, as a 32-bit float recording may be.
  soundfile.write(path, clip * np.float32(16.0), rate, subtype="FLOAT")
  assert np.abs(soundfile.read(path)[0]).max() > 1.0
  features = audio.file_log_mel(path, CONFIG)
  assert np.all(np.isfinite(features))
  # Just over the limit is refused; integer PCM stored as float is +90 dB.
  loud = clip / np.abs(clip).max() * np.float32(10 ** (60.5 / 20))
  soundfile.write(path, loud, rate, subtype="FLOAT")
  with pytest.raises(audio.AudioError, match=r"\+60.5 dBFS\) > \+60.0 dBFS"):
    audio.file_log_mel(path, CONFIG)


def test_check_audio_refuses_damaged_waveforms(gtzan_dir):
  waveform = audio.load_audio(
    os.path.join(gtzan_dir, "classical", "classical.00000.wav"), 16_000
  )
  for bad, problem in (
    (np.where(np.arange(waveform.size) == 5, np.nan, waveform), "non-finite"),
    (waveform * np.float32(1e30), "absurd amplitude"),
  ):
    with pytest.raises(audio.AudioError, match=problem):
      audio.check_audio("bad.wav", bad.astype(np.float32), CONFIG)


def test_non_finite_features_are_an_error_of_the_file(gtzan_dir, monkeypatch):
  path = os.path.join(gtzan_dir, "jazz", "jazz.00001.wav")
  waveform = audio.load_audio(path, CONFIG.sample_rate)
  good = audio.clip_features(path, waveform, CONFIG)
  np.testing.assert_array_equal(good, audio.features(waveform, CONFIG))

  def one_nan(waveform, config):
    out = logmel.log_mel(waveform, config)
    out[3, 7] = np.nan
    return out

  monkeypatch.setattr(audio, "features", one_nan)
  with pytest.raises(audio.AudioError, match="non-finite features: 1 of"):
    audio.clip_features(path, waveform, CONFIG)
  with pytest.raises(audio.AudioError, match="non-finite features") as info:
    audio.file_log_mel(path, CONFIG)
  assert info.value.path == path
