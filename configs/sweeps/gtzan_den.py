"""DEN, its ablations and the frozen-units variant beside STL and
fine-tuning: 5 folds at the comparison's budget (issue 9).

  .venv/bin/python launch/sweep.py --sweep=configs/sweeps/gtzan_den.py \
      --root=runs/den_comparison --parallel=2

The runs are those of `gtzan_comparison` with the same labels, so this
table's rows equal that sweep's.
"""

from configs.sweeps import gtzan_comparison
from mcl import sweep

LABELS = (
  "stl",
  "finetune",
  "den",
  "den_no_sr",
  "den_no_split",
  "den_constant",
  "den_frozen",
)


def get_sweep(seeds=(0,)) -> sweep.Sweep:
  budget = gtzan_comparison.BUDGET
  return sweep.Sweep(
    config="configs/gtzan.py",
    runs=sweep.grid(
      {
        label: {**gtzan_comparison.VARIANTS[label], **budget}
        for label in LABELS
      },
      folds=range(5),
      seeds=seeds,
    ),
  )
