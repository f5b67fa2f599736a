"""Genre classification on FMA medium (16 top genres) from raw waveform:
the setting of Kim & Nam's MIREX 2019 submission (TF-CRNN).

Shared by `configs/fma_<model>.py`: `make(model, length)` gives 2.5 s
segments (or the model's own length) of the 16 kHz waveform, random
segments for training, and track-level prediction as the mean of the
softmaxes of 12 evenly spaced segments (a 30 s clip); SGD with Nesterov
momentum 0.9 and batch 23 (Kim & Nam). The schedule is the defaults of
the authors' code (tae-jun/temporal-feedback-crnn, tuned there for speech
commands): learning rate 0.025, divided by 5 after 2 epochs without
improvement, three times; no weight decay. One difference stays: their
loss averages the cross-entropy of every GRU step's output
("many2many"), ours scores the last step only. Put the manual download
in `data.manual_dir` (README).
"""

import ml_collections

from mcl.configs import mtat_tagging
from mcl.datasets import fma


def make(model: str, length: int) -> ml_collections.ConfigDict:
  """The FMA genre config of a waveform model with `length`-sample input."""
  config = mtat_tagging.make("sample_cnn")  # The zoo's shared settings.
  config.data = ml_collections.ConfigDict()
  config.data.source = "fma"
  config.data.manual_dir = "data/fma"
  config.data.data_dir = "runs/tfds"
  config.data.subset = "medium"
  config.data.num_tags = 16  # Outputs: the subset's top genres.
  config.features.min_seconds = fma.FEATURES.min_seconds
  config.features.silence_db = fma.FEATURES.silence_db
  config.features.n_mels = fma.FEATURES.n_mels
  config.input.feature = "waveform"
  config.input.length = length
  config.input.n_mels = None
  config.model.name = model
  config.train.batch_size = 23
  config.data.eval_chunks = 12
  config.train.stages = (
    ("sgd", 0.025, 2),
    ("sgd", 0.005, 2),
    ("sgd", 0.001, 2),
    ("sgd", 0.0002, 2),
  )
  config.train.patience_resets = True
  config.train.weight_decay = 0.0
  config.train.max_epochs = 100
  return config
