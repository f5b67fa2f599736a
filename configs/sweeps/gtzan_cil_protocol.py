"""The class-incremental comparison on frozen MSD_musicnn embeddings:
every class-incremental method, ISMIR 2024's three task orders, tuned on
validation, 5 folds x 3 seeds.

  .venv/bin/python launch/sweep.py \
      --protocol=configs/sweeps/gtzan_cil_protocol.py \
      --budget=default --parallel=2 --root=runs/protocol_cil_msd

`mcl.analysis.protocol` runs it: each grid's configurations on every fold
in order s1 with the tuning seed 0, the per-fold choice by final average
validation accuracy (in this scenario: each task's validation clips among
all seen classes, the last row's mean), then every row on every fold, in
each of the orders s1, s2 and s3 (`mcl.datasets.tasks.GTZAN_ORDERS`), on
seeds 1, 2 and 3 (none of them the tuning seed). A method's three orders
are one row of the table (`Protocol.rows`: 45 runs, paired with the other
rows' by order, fold and seed), compared with RanPAC (paired.md).

The memories hold 100 clips in all (the study's 100 exemplars; a fold
trains on 60 clips, so they keep every clip of the first tasks until the
quota shrinks). RanPAC's lambda is chosen inside each run on the
validation clips of every class seen; its M is tuned here. The budget is
configs/gtzan_musicnn.py's default (150-step phases, patience 5).
configs/sweeps/gtzan_mtt_cil_protocol.py runs it on MTT_musicnn.
"""

from configs.sweeps import gtzan_protocol
from mcl.analysis import protocol
from mcl.datasets import tasks

BUDGETS = gtzan_protocol.BUDGETS
ORDERS = tuple(tasks.GTZAN_ORDERS)

# Two configurations per method with hyper-parameters, defaults first.
GRIDS = {
  "finetune": [{"method": "finetune"}],
  "joint": [{"method": "joint"}],
  "replay": [{"method": "replay"}],
  "ncm": [{"method": "ncm"}],
  "lwf": [
    {"method": "lwf", "lwf.strength": 1.0, "lwf.temperature": 2.0},
    {"method": "lwf", "lwf.strength": 3.0, "lwf.temperature": 1.0},
  ],
  "ewc": [
    {"method": "ewc", "ewc.strength": 0.1},  # The study's.
    {"method": "ewc", "ewc.strength": 100.0},
  ],
  "icarl": [
    {"method": "icarl", "icarl.strength": 1.0, "icarl.temperature": 2.0},
    {"method": "icarl", "icarl.strength": 3.0, "icarl.temperature": 1.0},
  ],
  "derpp": [
    {"method": "derpp", "derpp.alpha": 0.3, "derpp.beta": 0.5},
    {"method": "derpp", "derpp.alpha": 1.0, "derpp.beta": 1.0},
  ],
  "ranpac": [
    {"method": "ranpac", "ranpac.projection_dim": 1000},
    {"method": "ranpac", "ranpac.projection_dim": 2000},
  ],
}
# Table rows: each grid's own, and the cosine nearest class mean (the
# study's CosineCenter) beside its L2Center.
ROWS = {
  **{label: protocol.Variant(label) for label in GRIDS},
  "ncm_cosine": protocol.Variant("ncm", {"ncm.distance": "cosine"}),
}


def get_protocol(
  seeds=(1, 2, 3), budget="default", config="gtzan_musicnn_cil"
) -> protocol.Protocol:
  """Every row in every order: variants `<row>_<order>`, pooled by row."""
  if budget not in BUDGETS:
    raise ValueError(f"unknown budget {budget!r}; known: {sorted(BUDGETS)}")
  variants, rows = {}, {}
  for label, variant in ROWS.items():
    for order in ORDERS:
      name = f"{label}_{order}"
      variants[name] = protocol.Variant(
        variant.grid, {**variant.overrides, "order": order}
      )
      rows[name] = (label, order)
  return protocol.Protocol(
    config=config,  # mcl/configs/<config>.py, by name
    budget=BUDGETS[budget],
    grids=GRIDS,
    variants=variants,
    folds=range(5),
    seeds=tuple(seeds),
    reference="ranpac",
    rows=rows,
  )
