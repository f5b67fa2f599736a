"""DEN on MagnaTagATune genre tasks (Yoon et al. 2018's MTAT scenario).

Five task-incremental pairs of genre tags over the single-label clips of
the `genres` selection (`mcl.datasets.magnatagatune`), standard folder
split (train 0-b, valid c, test d-f). Same runner, backbone, methods and
method sections as `configs/gtzan.py`; `--config.method=<name>` runs any
baseline. Put the manual download in `data.manual_dir` (README).
"""

import ml_collections

from mcl.configs import gtzan
from mcl.datasets import magnatagatune, tasks


def get_config() -> ml_collections.ConfigDict:
  config = gtzan.get_config()
  config.tasks = tasks.MTAT_GENRE_PAIRS

  config.data = ml_collections.ConfigDict()
  config.data.source = "magnatagatune"
  config.data.manual_dir = "data/magnatagatune"
  config.data.data_dir = "runs/tfds"
  config.data.genres = magnatagatune.GENRES
  config.data.chunk_seconds = 3.0
  config.data.eval_chunks = 8
  config.data.allow_empty_classes = False

  # The top-50 length rule (29.1 s decoded); only digital silence is
  # rejected (quiet classical clips are real data).
  config.features.min_seconds = magnatagatune.FEATURES.min_seconds
  config.features.silence_db = magnatagatune.FEATURES.silence_db

  # Hundreds to thousands of clips per task instead of GTZAN's 12: more
  # steps per phase, validation every 50 steps.
  config.train.eval_batch_size = 16
  config.train.fit.max_steps = 2_000
  config.train.fit.eval_every = 50
  config.train.fit.patience = 5
  return config
