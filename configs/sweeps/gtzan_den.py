"""DEN, its ablations and the frozen-units variant beside STL and
fine-tuning: 5 folds at the cpu budget, untuned (issue 9).

  .venv/bin/python launch/sweep.py --sweep=configs/sweeps/gtzan_den.py \
      --root=runs/den_comparison --parallel=2

The tuned comparison of every method is `configs/sweeps/gtzan_protocol.py`.
"""

from configs.sweeps import gtzan_protocol
from mcl.analysis import sweep

# label -> config overrides of configs/gtzan.py: the protocol's rows at
# their grids' first (default) configuration, untuned.
VARIANTS = {
  label: {**gtzan_protocol.GRIDS[v.grid][0], **v.overrides}
  for label, v in gtzan_protocol.VARIANTS.items()
  if v.grid in ("stl", "finetune", "den")
}
# A sensitivity row: selective retraining's pull ten times stronger.
VARIANTS["den_pull10"] = {"method": "den", "den.l2": 10.0}


def get_sweep(seeds=(0,)) -> sweep.Sweep:
  budget = gtzan_protocol.BUDGETS["cpu"]
  return sweep.Sweep(
    config="gtzan",  # mcl/configs/gtzan.py, by name
    runs=sweep.grid(
      {label: {**o, **budget} for label, o in VARIANTS.items()},
      folds=range(5),
      seeds=seeds,
    ),
  )
