"""configs/sweeps/gtzan_cil_protocol.py on frozen MTT_musicnn embeddings
(its default layer, cnn3_max_mean: `mcl.models.encoders.DEFAULT_LAYERS`).

  .venv/bin/python launch/sweep.py \
      --protocol=configs/sweeps/gtzan_mtt_cil_protocol.py \
      --budget=default --parallel=2 --root=runs/protocol_cil_mtt
"""

import dataclasses

from configs.sweeps import gtzan_cil_protocol
from mcl.analysis import protocol

BUDGETS = gtzan_cil_protocol.BUDGETS


def get_protocol(seeds=(1, 2, 3), budget="default") -> protocol.Protocol:
  base = gtzan_cil_protocol.get_protocol(seeds, budget)
  return dataclasses.replace(
    base, budget={**base.budget, "data.encoder": "MTT_musicnn"}
  )
