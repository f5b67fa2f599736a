"""DEN on frozen MSD_musicnn embeddings of GTZAN's five genre pairs.

configs/gtzan.py's tasks, folds and methods, with the records a frozen
pretrained encoder's (`mcl.datasets.encoded_folders`): each clip's musicnn
log-mel cut into 3-s patches every 1.5 s, each patch embedded once by the
musicnn package's MSD_musicnn checkpoint at its chosen layer
(`mcl.models.encoders.DEFAULT_LAYERS`). The trunk is DEN's AWA
perceptron (Yoon et al. 2018: 312-128, ReLU) on one patch embedding; a
test clip is scored by averaging its head's probabilities over its
patches (`data.eval_chunks` = 12 evenly spaced ones: every patch of the
15-20-s excerpts, which have 8-12; a clip with fewer counts some twice).
The budget is configs/gtzan.py's default (150-step phases).
Every method of `mcl.continual.registry.METHODS` runs with
`--config.method=<name>`; `--config.data.encoder=MTT_musicnn` (or a vgg)
swaps the encoder.
"""

import ml_collections

from mcl.configs import gtzan


def get_config() -> ml_collections.ConfigDict:
  config = gtzan.get_config()
  config.data.encoder = "MSD_musicnn"
  config.data.encoder_layer = "default"
  config.data.patch_hop_seconds = 1.5
  # A 20-s excerpt has 1 + (1250 - 187) // 94 = 12 patches of 187 frames
  # every 94 (1.5 s); a 15-s one 8.
  config.data.eval_chunks = 12

  # The musicnn package's front end (mcl.features.logmel.musicnn_log_mel).
  config.features.front_end = "musicnn"
  config.features.n_mels = 96

  config.model.name = "mlp"
  config.model.widths.conv_widths = ()
  config.model.widths.dense_widths = (312, 128)

  config.train.batch_size = 32
  config.train.eval_batch_size = 16
  return config
