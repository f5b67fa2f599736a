"""MagnaTagATune top-50 tagging with the recipe of Won et al. (SMC 2020).

Shared by `configs/mtat_<model>.py`: `make(model)` gives the model's paper
input (`mcl.models.inputs.PAPER_INPUTS`) and the reference training recipe:
batch 16 of random chunks; Adam lr 1e-4 with (coupled) weight decay 1e-4
for 80 epochs, then SGD with Nesterov momentum 0.9 at lr 1e-3 (20 epochs),
1e-4 (20 epochs) and 1e-5 until epoch 200, each stage restarting from the
best checkpoint by validation loss; validation once per epoch; test on 16
evenly spaced chunks per clip. Put the manual download in
`data.manual_dir` (README).
"""

import ml_collections

from mcl.configs import gtzan
from mcl.datasets import magnatagatune
from mcl.models import inputs


def make(model: str) -> ml_collections.ConfigDict:
  """The benchmark config of a zoo model (a key of `PAPER_INPUTS`)."""
  spec = inputs.PAPER_INPUTS[model]
  config = ml_collections.ConfigDict()
  config.experiment = "tagging"
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.source = "magnatagatune"  # or "fma" (configs/fma_genres.py)
  config.data.manual_dir = "data/magnatagatune"
  config.data.data_dir = "runs/tfds"
  config.data.num_tags = 50
  # Evenly spaced chunks per evaluation clip, probabilities averaged.
  config.data.eval_chunks = 16

  # The continual configs' front end (16 kHz, n_fft 512, hop 256, dB) at
  # the model's mel count, with the top-50 length rule (29.1 s decoded).
  config.features = gtzan.get_config().features
  config.features.n_mels = spec.n_mels or 128
  config.features.min_seconds = magnatagatune.FEATURES.min_seconds
  config.features.silence_db = magnatagatune.FEATURES.silence_db

  config.input = ml_collections.ConfigDict()
  config.input.feature = spec.feature
  config.input.length = spec.length  # Frames (log_mel) or samples.
  config.input.n_mels = spec.n_mels

  config.model = ml_collections.ConfigDict()
  config.model.name = model
  config.model.widths = ml_collections.ConfigDict()  # Paper widths.
  # Folder of published weights, for models that take them (vggish).
  config.model.pretrained = ""

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 16
  config.train.shuffle_buffer = 1024  # Clips.
  config.train.eval_batch_size = 16  # Clips (x 16 chunks).
  # (optimizer, learning rate, epochs before the next stage).
  config.train.stages = (
    ("adam", 1e-4, 80),
    ("sgd", 1e-3, 20),
    ("sgd", 1e-4, 20),
    ("sgd", 1e-5, 200),
  )
  # The reference counts epochs since the stage began (fixed lengths);
  # True counts epochs without improvement instead.
  config.train.patience_resets = False
  config.train.weight_decay = 1e-4
  config.train.momentum = 0.9
  config.train.max_epochs = 200
  config.train.steps_per_epoch = 0  # 0: one pass over the train clips.
  return config
