"""A fully connected network on FMA's 518 track features of the GTZAN
excerpts, five test folds, beside scikit-learn's MLP and SVM.

The FMA paper's feature baseline (Defferrard et al. 2017) on GTZAN's
10 genres: features from `mcl.features.track_features` (computed once, cached in
`data.data_dir`), standardised on the training folds; each test fold f has
validation fold f + 1 (`mcl.experiments.feature_dnn`).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = "feature_dnn"
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.source = "labelled_folders"  # or "fma" (fma_feature_dnn)
  config.data.source_dir = "../shared/data/gtzan_excerpts"
  config.data.data_dir = "runs/tfds"
  config.data.num_folds = 5
  config.data.test_folds = (0, 1, 2, 3, 4)

  config.model = ml_collections.ConfigDict()
  config.model.hidden = (256, 256)
  config.model.dropout_rate = 0.2

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 16
  config.train.fit = ml_collections.ConfigDict()
  config.train.fit.learning_rate = 1e-3
  config.train.fit.max_steps = 2000
  config.train.fit.eval_every = 20
  config.train.fit.patience = 10
  return config
