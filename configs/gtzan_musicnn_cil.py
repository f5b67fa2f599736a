"""Class-incremental GTZAN on frozen MSD_musicnn embeddings (ISMIR 2024's
scenario): five two-genre tasks in one of the study's three orders, one
head over every genre seen, no task id at test.

  .venv/bin/python -m mcl.main --config=configs/gtzan_musicnn_cil.py \
      --config.order=s2 --config.method=ranpac --workdir=runs/cil_ranpac

configs/gtzan_musicnn.py's records, folds, MLP trunk and budget, with
`scenario = "class_incremental"` and `order` ("s1", "s2", "s3":
`mcl.datasets.tasks.GTZAN_ORDERS`, replacing `tasks`). The methods are
`mcl.continual.registry.CLASS_INCREMENTAL`'s: finetune, joint (the
oracle), lwf, ewc, replay, icarl, derpp (memories of 100 clips in all,
as the study's 100 exemplars), ncm and ranpac (no training). DER++'s
alpha and beta are its paper's GTZAN-free defaults for small buffers.
"""

import ml_collections

from mcl.configs import gtzan_musicnn


def get_config() -> ml_collections.ConfigDict:
  config = gtzan_musicnn.get_config()
  config.scenario = "class_incremental"
  config.order = "s1"
  config.method = "ranpac"
  for section in ("replay", "icarl", "derpp"):
    config[section].memory_clips = 100
  # The study's EWC strength; the Fisher on 64 patches of a task's 24
  # training clips (its gradient over all ten classes is most of a run).
  config.ewc.strength = 0.1
  config.ewc.fisher_batches = 2
  return config
