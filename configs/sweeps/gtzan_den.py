"""DEN, its ablations and the frozen-units variant beside STL and
fine-tuning: 5 folds at the cpu budget, untuned (issue 9).

  .venv/bin/python launch/sweep.py --sweep=configs/sweeps/gtzan_den.py \
      --root=runs/den_comparison --parallel=2

The tuned comparison of every method is `configs/sweeps/gtzan_protocol.py`.
"""

from configs.sweeps import gtzan_protocol
from mcl import sweep

# label -> config overrides of configs/gtzan.py.
VARIANTS = {
  "stl": {"method": "stl"},
  "finetune": {"method": "finetune"},
  "den": {"method": "den"},
  "den_no_sr": {"method": "den", "den.selective_retraining": False},
  "den_no_split": {"method": "den", "den.split": False},
  "den_constant": {"method": "den", "den.expansion": "constant"},
  "den_frozen": {"method": "den", "den.shared_units": "frozen"},
  # A sensitivity row: selective retraining's pull ten times stronger.
  "den_pull10": {"method": "den", "den.l2": 10.0},
}


def get_sweep(seeds=(0,)) -> sweep.Sweep:
  budget = gtzan_protocol.BUDGETS["cpu"]
  return sweep.Sweep(
    config="configs/gtzan.py",
    runs=sweep.grid(
      {label: {**o, **budget} for label, o in VARIANTS.items()},
      folds=range(5),
      seeds=seeds,
    ),
  )
