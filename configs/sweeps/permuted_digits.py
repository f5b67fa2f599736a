"""DEN, STL and fine-tuning on permuted digits (configs/permuted_digits.py).

  .venv/bin/python launch/sweep.py --sweep=configs/sweeps/permuted_digits.py \
      --root=runs/permuted_digits --seeds=0,1,2

The digits have one seeded split, not folds: runs are `<label>/seed<s>`.
The seed varies initialisation and batch order; the tasks (permutations)
are fixed by `data.permutation_seed`.
"""

from mcl.analysis import sweep

# label -> config overrides of configs/permuted_digits.py.
VARIANTS = {
  "stl": {"method": "stl"},
  "finetune": {"method": "finetune"},
  "den": {"method": "den"},
}


def get_sweep(seeds=(0,)) -> sweep.Sweep:
  return sweep.Sweep(
    config="permuted_digits",  # by name: works installed
    runs=sweep.grid(VARIANTS, folds=None, seeds=seeds),
  )
