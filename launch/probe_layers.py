"""Validation-fold linear-probe accuracy of every encoder layer: how
`mcl.models.encoders.DEFAULT_LAYERS` was chosen.

  .venv/bin/python launch/probe_layers.py [--source_dir=DIR] [--encoders=...]

For each encoder, every clip of the folder (musicnn log-mel, clips
shorter than a patch zero-padded to 3 s) is cut into 3-s patches every
`--hop` seconds and embedded at every layer in one pass. A clip is the
mean of its patch embeddings. For each of the 5 folds as test fold, its
next fold is the validation fold and the other three train a logistic
regression (scikit-learn, features standardised on the training clips);
the figure is the validation accuracy, averaged over the five, on the
10-way task and on each of configs/gtzan.py's genre pairs (mean of the
five pairs). The "per-example" column standardises each embedding by its
own mean and deviation first, as the MLP trunk does. Test folds are never
scored. Prints one row per encoder and layer.
"""

import time

import numpy as np
from absl import app, flags
from sklearn import linear_model, pipeline, preprocessing

from mcl.datasets import labelled_folders, tasks
from mcl.features import audio, logmel, patches
from mcl.models import encoders, musicnn_checkpoint

_SOURCE = flags.DEFINE_string(
  "source_dir", "../shared/data/gtzan_excerpts", "<label>/<clip> audio."
)
_DATA = flags.DEFINE_string("data_dir", "runs/tfds", "TFDS data directory.")
_ENCODERS = flags.DEFINE_list(
  "encoders", list(musicnn_checkpoint.CHECKPOINTS), "Checkpoints to probe."
)
_HOP = flags.DEFINE_float("hop", 1.5, "Seconds between patch starts.")
FOLDS = 5


def _clips(log_mels):
  rows = []
  for k in range(FOLDS):
    rows += list(log_mels.as_dataset(split=f"fold{k}").as_numpy_iterator())
  return rows


def _accuracy(x, y, folds, classes, per_example):
  """Mean validation accuracy over the 5 test folds, on `classes`."""
  if per_example:
    x = (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-5)
  keep = np.isin(y, classes)
  x, y, folds = x[keep], y[keep], folds[keep]
  scores = []
  for test in range(FOLDS):
    validation = (test + 1) % FOLDS
    train = (folds != test) & (folds != validation)
    probe = pipeline.make_pipeline(
      preprocessing.StandardScaler(),
      linear_model.LogisticRegression(C=1.0, max_iter=2000),
    )
    probe.fit(x[train], y[train])
    scores.append(probe.score(x[folds == validation], y[folds == validation]))
  return float(np.mean(scores))


def main(argv):
  del argv
  features = audio.FeatureConfig(front_end="musicnn", n_mels=96)
  log_mels = labelled_folders.build(
    _SOURCE.value, _DATA.value, features, FOLDS, pad_seconds=3.0
  )
  rows = _clips(log_mels)
  names = log_mels.info.features["label"].names
  y = np.asarray([r["label"] for r in rows])
  folds = np.asarray([r["fold"] for r in rows])
  pairs = [[names.index(g) for g in pair] for pair in tasks.GTZAN_GENRE_PAIRS]
  hop = patches.hop_frames(
    _HOP.value, logmel.MUSICNN_SAMPLE_RATE, logmel.MUSICNN_HOP
  )
  cuts = [
    patches.cut(r["log_mel"], logmel.MUSICNN_PATCH_FRAMES, hop) for r in rows
  ]
  ends = np.cumsum([len(c) for c in cuts])[:-1]
  print(f"{len(rows)} clips, {ends[-1] + len(cuts[-1])} patches")
  print("encoder      layer            dim  10-way  pairs  10-way per-example")
  for name in _ENCODERS.value:
    layers = tuple(encoders.layers_of(name))
    start = time.perf_counter()
    embedded = encoders.Encoder(name, layers).embed(np.concatenate(cuts))
    seconds = time.perf_counter() - start
    for layer, values in zip(layers, embedded, strict=True):
      x = np.stack([v.mean(0) for v in np.split(values, ends)])
      ten = _accuracy(x, y, folds, np.arange(len(names)), False)
      pair = np.mean([_accuracy(x, y, folds, p, False) for p in pairs])
      own = _accuracy(x, y, folds, np.arange(len(names)), True)
      print(
        f"{name:12s} {layer:15s} {x.shape[1]:5d}  {ten:.3f}   {pair:.3f}"
        f"  {own:.3f}"
      )
    print(f"{name}: every layer of every patch embedded in {seconds:.1f} s")


if __name__ == "__main__":
  app.run(main)
