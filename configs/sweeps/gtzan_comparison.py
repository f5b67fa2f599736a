"""The comparison of issue 3: every method and DEN variant, 5 folds.

  .venv/bin/python launch/sweep.py --sweep=configs/sweeps/gtzan_comparison.py

Seeds: `--seeds=0,1,2` on the command line of launch/sweep.py.
"""

from mcl import sweep

# The comparison's training budget, the same for every method: at most 40
# steps per phase, validation every 10, patience 3 (configs/gtzan.py allows
# 150 and 5). It keeps 60 runs on 2 CPU cores under 90 minutes.
BUDGET = {"train.fit.max_steps": 40, "train.fit.patience": 3}

# label -> config overrides of configs/gtzan.py.
VARIANTS = {
  "stl": {"method": "stl"},
  "joint": {"method": "joint"},
  "finetune": {"method": "finetune"},
  "l2": {"method": "l2"},
  "ewc": {"method": "ewc"},
  "lwf": {"method": "lwf"},
  "replay": {"method": "replay"},
  "progressive": {"method": "progressive"},
  "den": {"method": "den"},
  "den_no_sr": {"method": "den", "den.selective_retraining": False},
  "den_no_split": {"method": "den", "den.split": False},
  "den_constant": {"method": "den", "den.expansion": "constant"},
  "den_frozen": {"method": "den", "den.shared_units": "frozen"},
}


def get_sweep(seeds=(0,)) -> sweep.Sweep:
  return sweep.Sweep(
    config="configs/gtzan.py",
    runs=sweep.grid(
      {label: {**o, **BUDGET} for label, o in VARIANTS.items()},
      folds=range(5),
      seeds=seeds,
    ),
  )
