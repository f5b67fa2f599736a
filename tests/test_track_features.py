"""FMA's 518 track features on real audio, and the network on them."""

import os

import jax
import librosa
import numpy as np
import pytest
import scipy.stats

from mcl.configs import gtzan_feature_dnn
from mcl.datasets import track_table
from mcl.experiments import feature_dnn as track_dnn
from mcl.features import audio, track_features


def test_columns_follow_the_features_csv_layout():
  cols = track_features.columns()
  assert len(cols) == 518 == 7 * sum(track_features.SIZES.values())
  assert cols[0] == ("chroma_cens", "kurtosis", "01")
  assert cols[11] == ("chroma_cens", "kurtosis", "12")
  assert cols[12] == ("chroma_cens", "max", "01")
  assert cols[-1] == ("zcr", "std", "01")
  assert cols == sorted(cols)  # features.csv is sorted on all three levels.
  assert [c for c in cols if c[0] == "mfcc"][0] == ("mfcc", "kurtosis", "01")
  assert sum(1 for c in cols if c[0] == "spectral_contrast") == 7 * 7


def test_features_of_a_real_excerpt(gtzan_dir):
  path = os.path.join(gtzan_dir, "jazz", "jazz.00004.wav")
  waveform = audio.load_audio(path, 22_050)  # GTZAN's native rate.
  values = track_features.track_features(waveform, 22_050)
  assert values.shape == (518,) and values.dtype == np.float32
  assert np.all(np.isfinite(values))
  named = dict(zip(track_features.columns(), values, strict=True))
  zcr = librosa.feature.zero_crossing_rate(
    waveform, frame_length=2048, hop_length=512
  )[0]
  assert named["zcr", "mean", "01"] == pytest.approx(zcr.mean(), rel=1e-5)
  assert named["zcr", "kurtosis", "01"] == pytest.approx(
    scipy.stats.kurtosis(zcr), rel=1e-4
  )
  for n in range(1, 13):  # Chroma lies in [0, 1].
    assert 0.0 <= named["chroma_stft", "min", f"{n:02d}"] <= 1.0
  assert named["mfcc", "mean", "01"] < 0  # C0 of dB-scaled power: negative.
  assert named["spectral_centroid", "max", "01"] <= 22_050 / 2


def test_network_beats_chance_on_held_out_folds(tiny_audio_dir, tmp_path):
  config = gtzan_feature_dnn.get_config()
  config.data.source_dir = tiny_audio_dir
  config.data.data_dir = str(tmp_path / "tables")
  config.data.test_folds = (0, 1, 2, 3, 4)
  config.model.hidden = (32,)
  config.train.batch_size = 4
  config.train.fit.max_steps = 200
  results = track_dnn.run(config, str(tmp_path / "run"))

  # 4 genres x 5 clips, one clip of each genre per fold.
  assert results["clips"] == 20 and results["chance"] == 0.25
  assert (
    results["provenance"]["devices"]["kind"] == jax.devices()[0].device_kind
  )
  assert set(results["folds"]) == {f"fold{f}" for f in range(5)}
  for figures in results["folds"].values():
    assert figures["steps"] > 0
    assert all(0.0 <= figures[k] <= 1.0 for k in ("dnn", "mlp", "svm"))
  # Blues, classical, metal and pop are far apart in these features.
  assert results["mean"]["dnn"] >= 0.6
  assert results["mean"]["svm"] >= 0.6

  # The table is cached: a second build reads it and computes nothing.
  original = track_table._featurise
  track_table._featurise = None
  try:
    again = track_table.build(tiny_audio_dir, config.data.data_dir, 5)
  finally:
    track_table._featurise = original
  assert again.features.shape == (20, 518)
  assert again.label_names == ["blues", "classical", "metal", "pop"]


def test_chroma_of_a_pure_a4_is_a():
  rate = 22_050
  t = np.arange(3 * rate) / rate
  tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
  frames = track_features.frame_features(tone, rate)
  a = 9  # C, C#, D, D#, E, F, F#, G, G#, A
  for name in ("chroma_cqt", "chroma_cens", "chroma_stft"):
    assert np.argmax(frames[name].mean(axis=1)) == a, name


def test_silence_is_skipped_not_tabled(tmp_path):
  import soundfile

  path = str(tmp_path / "silence.wav")
  soundfile.write(path, np.zeros(22_050 * 3, np.float32), 22_050)
  values, problem = track_table._featurise(path)
  assert values is None and "digital silence" in problem
