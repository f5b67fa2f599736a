"""DEN, its ablations and the frozen-units variant beside STL and
fine-tuning: 5 folds at the comparison's budget (issue 9).

  .venv/bin/python launch/sweep.py --sweep=configs/sweeps/gtzan_den.py \
      --root=runs/den_comparison --parallel=2

The runs are those of `gtzan_comparison` with the same labels, so this
table's rows equal that sweep's.
"""

from configs.sweeps import gtzan_comparison
from mcl import sweep

# A sensitivity row: selective retraining's pull ten times stronger.
EXTRA = {"den_pull10": {"method": "den", "den.l2": 10.0}}
LABELS = (
  "stl",
  "finetune",
  "den",
  "den_no_sr",
  "den_no_split",
  "den_constant",
  "den_frozen",
  "den_pull10",
)


def get_sweep(seeds=(0,)) -> sweep.Sweep:
  budget = gtzan_comparison.BUDGET
  return sweep.Sweep(
    config="configs/gtzan.py",
    runs=sweep.grid(
      {
        label: {**{**gtzan_comparison.VARIANTS, **EXTRA}[label], **budget}
        for label in LABELS
      },
      folds=range(5),
      seeds=seeds,
    ),
  )
