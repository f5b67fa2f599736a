"""DEN on FMA medium: eight task-incremental pairs of its 16 top genres
(`mcl.datasets.tasks.FMA_GENRE_PAIRS`), the dataset's own train/validation/test
split; the GTZAN config's runner, backbone and method sections
(`--config.method=<name>` runs any baseline). Put the manual download in
`data.manual_dir` (README).
"""

import ml_collections

from mcl.configs import gtzan
from mcl.datasets import fma, tasks


def get_config() -> ml_collections.ConfigDict:
  config = gtzan.get_config()
  config.tasks = tasks.FMA_GENRE_PAIRS

  config.data = ml_collections.ConfigDict()
  config.data.source = "fma"
  config.data.manual_dir = "data/fma"
  config.data.data_dir = "runs/tfds"
  config.data.subset = "medium"
  config.data.chunk_seconds = 3.0
  config.data.eval_chunks = 8
  config.data.allow_empty_classes = False

  # FMA's clips are 30 s; a clip decoding to under 10 s is truncated.
  config.features.min_seconds = fma.FEATURES.min_seconds

  # Thousands of clips per task: more steps per phase (as configs/mtat_den).
  config.train.eval_batch_size = 16
  config.train.fit.max_steps = 2_000
  config.train.fit.eval_every = 50
  config.train.fit.patience = 5
  return config
