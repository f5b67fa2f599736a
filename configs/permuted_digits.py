"""Permuted digits, 10 tasks, task-incremental; DEN by default.

DEN's permuted-MNIST benchmark (Yoon et al. 2018) without a download:
scikit-learn's 8x8 digits, one fixed pixel permutation per task (task 0
unpermuted), a 10-way head per task, the reference code's 312-128
multilayer perceptron. `--config.data.source=mnist` runs the same on TFDS
MNIST (28x28, downloaded into `data.data_dir`). Every method of
`mcl.continual.registry.METHODS` runs with `--config.method=<name>`.
The tasks come from the data source: there is no `config.tasks`.
"""

import ml_collections

from mcl.configs import gtzan


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = "continual"
  config.method = "den"
  config.seed = 0  # Initialisation and batch order.

  config.data = ml_collections.ConfigDict()
  config.data.source = "permuted_digits"  # or "mnist"
  config.data.data_dir = "runs/tfds"  # MNIST only.
  config.data.num_tasks = 10
  config.data.permutation_seed = 0  # The tasks; the same for every seed.
  # Digits only (MNIST: its test split, the last 10,000 training images
  # for validation): seeded split of each digit's images.
  config.data.split_seed = 0
  config.data.validation_fraction = 0.2
  config.data.test_fraction = 0.2

  config.model = ml_collections.ConfigDict()
  config.model.name = "mlp"
  config.model.widths = ml_collections.ConfigDict()
  config.model.widths.conv_widths = ()  # Flattened pixels into dense_0.
  config.model.widths.dense_widths = (312, 128)

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 64
  config.train.eval_batch_size = 256
  config.train.fit = ml_collections.ConfigDict()
  config.train.fit.learning_rate = 1e-3
  config.train.fit.max_steps = 300
  config.train.fit.eval_every = 20
  config.train.fit.patience = 5

  # The methods' settings are GTZAN's (DEN's chosen on its validation
  # fold); only replay's memory is counted in images here.
  for section in ("den", "l2", "ewc", "lwf", "ncm", "ranpac"):
    config[section] = gtzan.get_config()[section]

  config.replay = ml_collections.ConfigDict()
  config.replay.memory_clips = 200  # Images, shared by the seen tasks.
  config.replay.chunks_per_clip = 1  # An image is one chunk.
  config.replay.batch_size = 32
  # The class-incremental scenario's (`--config.scenario`), memories in
  # images as replay's.
  config.scenario = "task_incremental"
  for section in ("icarl", "derpp"):
    config[section] = gtzan.get_config()[section]
    config[section].memory_clips = 200
    config[section].chunks_per_clip = 1
    config[section].batch_size = 32
  return config


def tiny(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks the config to CPU-test size, in place: 3 tasks, a 32-16 MLP
  at a 10x learning rate (STL reaches ~0.9 test accuracy in 60 steps)."""
  config.data.num_tasks = 3
  config.model.widths.dense_widths = (32, 16)
  config.train.batch_size = 32
  config.train.fit.learning_rate = 1e-2
  config.train.fit.max_steps = 60
  config.train.fit.eval_every = 20
  config.train.fit.patience = 2
  config.den.k = 2
  config.replay.memory_clips = 30
  config.replay.batch_size = 8
  return config
