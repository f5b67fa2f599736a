"""A fully connected network on FMA's own 518 precomputed features
(`fma_metadata/features.csv`), FMA medium (16 top genres) in the dataset's
train/validation/test split, beside scikit-learn's MLP and SVM (the FMA
paper's feature baselines; Defferrard et al. 2017 report about 0.58 for
their MLP on medium). Needs only `fma_metadata/` in `data.manual_dir`
(README).
"""

import ml_collections

from mcl.configs import gtzan_feature_dnn


def get_config() -> ml_collections.ConfigDict:
  config = gtzan_feature_dnn.get_config()
  config.data = ml_collections.ConfigDict()
  config.data.source = "fma"
  config.data.manual_dir = "data/fma"
  config.data.data_dir = "runs/tfds"
  config.data.subset = "medium"
  config.train.batch_size = 64
  # About 20,000 training tracks: an epoch is ~310 steps of 64.
  config.train.fit.max_steps = 30_000
  config.train.fit.eval_every = 310
  config.train.fit.patience = 10
  return config
