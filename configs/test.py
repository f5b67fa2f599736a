"""Tiny DEN config for CPU tests: two tasks, small widths, few steps."""

import ml_collections

from mcl.configs import gtzan


def tiny(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks an experiment config to CPU-test size, in place."""
  config.data.chunk_seconds = 1.0
  config.data.eval_chunks = 2
  config.features.n_mels = 32
  config.model.widths.conv_widths = (4, 8)
  config.model.widths.dense_widths = (8,)
  config.train.batch_size = 8
  config.train.eval_batch_size = 4
  config.train.fit.max_steps = 6
  config.train.fit.eval_every = 3
  config.train.fit.patience = 2
  config.den.k = 2
  return config


def get_config() -> ml_collections.ConfigDict:
  config = tiny(gtzan.get_config())
  config.tasks = (("blues", "classical"), ("metal", "pop"))
  return config
