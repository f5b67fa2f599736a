"""`mcl.sweep` from a checkout (installed: the `mcl-sweep` command).

.venv/bin/python launch/sweep.py --sweep=configs/sweeps/permuted_digits.py
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mcl import sweep  # noqa: E402

if __name__ == "__main__":
  sweep.cli()
