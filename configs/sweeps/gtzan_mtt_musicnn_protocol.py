"""DEN and STL on frozen MTT_musicnn embeddings (the README's caveat: MSD's
tags name genres, MagnaTagATune's fewer): gtzan_musicnn_protocol's DEN
and STL rows with `data.encoder = "MTT_musicnn"` (its chosen layer).

  .venv/bin/python launch/sweep.py \\
      --protocol=configs/sweeps/gtzan_mtt_musicnn_protocol.py \\
      --budget=default --seeds=1,2,3 --parallel=2 \\
      --root=runs/protocol_mtt_musicnn
"""

import dataclasses

from configs.sweeps import gtzan_musicnn_protocol
from mcl.analysis import protocol

GRIDS = {k: gtzan_musicnn_protocol.GRIDS[k] for k in ("stl", "den")}
VARIANTS = {label: protocol.Variant(label) for label in GRIDS}


def get_protocol(seeds=(1, 2, 3), budget="default") -> protocol.Protocol:
  base = gtzan_musicnn_protocol.get_protocol(seeds, budget)
  return dataclasses.replace(
    base,
    # Every run's overrides: the budget and the encoder.
    budget={**base.budget, "data.encoder": "MTT_musicnn"},
    grids=GRIDS,
    variants=VARIANTS,
  )
