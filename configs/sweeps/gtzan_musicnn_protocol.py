"""The comparison on frozen MSD_musicnn embeddings: every method and DEN
variant on the MLP trunk, tuned on validation, 5 folds x 3 seeds.

  .venv/bin/python launch/sweep.py \
      --protocol=configs/sweeps/gtzan_musicnn_protocol.py \
      --budget=default --seeds=1,2,3 --parallel=2 \
      --root=runs/protocol_musicnn

`mcl.analysis.protocol` runs it as configs/sweeps/gtzan_protocol.py's:
each grid's two configurations on every fold with the tuning seed 0,
the per-fold choice by final average validation accuracy, then every row
on every fold and on seeds 1, 2, 3 (none of them the tuning seed, so no
final figure carries the selection's optimism). The budget is
configs/gtzan_musicnn.py's default: 150-step phases, validation every
10, patience 5. The grids are gtzan_protocol's (the same hyper-parameters
and values), the replay memory in clips. The MTT_musicnn rows (DEN and STL)
are configs/sweeps/gtzan_mtt_musicnn_protocol.py's.
"""

import dataclasses

from configs.sweeps import gtzan_protocol
from mcl.analysis import protocol

BUDGETS = gtzan_protocol.BUDGETS
GRIDS = gtzan_protocol.GRIDS
VARIANTS = gtzan_protocol.VARIANTS


def get_protocol(seeds=(1, 2, 3), budget="default") -> protocol.Protocol:
  return dataclasses.replace(
    gtzan_protocol.get_protocol(seeds, budget),
    config="gtzan_musicnn",  # mcl/configs/gtzan_musicnn.py, by name
  )
