"""Capacity of a method's networks: parameters in use per task and in all.

DEN's claim is accuracy near single-task networks at a fraction of their
parameters (Yoon et al. 2018, Sec. 4); these counts are that fraction's
numerator. A task's network is what answers for it (`Method.network`):
for a timestamped method its units of timestamp <= j and its own head.
"""

from collections.abc import Sequence

import jax
import numpy as np

from mcl.continual import method
from mcl.models import head_name


def count_parameters(network: method.Network) -> tuple[int, int]:
  """(scalars, nonzero scalars) of a task's network, other heads excluded."""
  own = head_name(network.head)
  leaves = [
    v
    for name, group in network.params.items()
    if not name.startswith("head_") or name == own
    for v in group.values()
  ]
  return (
    int(sum(np.size(v) for v in leaves)),
    int(sum(np.count_nonzero(v) for v in leaves)),
  )


def capacity(networks: Sequence[method.Network], params: dict) -> dict:
  """Parameter counts after a task.

  Args:
    networks: the networks of tasks 0..i.
    params: the method's whole tree.

  Returns:
    {"params_per_task", "nonzero_params_per_task": one int per task;
    "total_params", "total_nonzero_params": of the whole tree}.
  """
  counts = [count_parameters(n) for n in networks]
  leaves = jax.tree.leaves(params)
  return {
    "params_per_task": [c[0] for c in counts],
    "nonzero_params_per_task": [c[1] for c in counts],
    "total_params": int(sum(np.size(v) for v in leaves)),
    "total_nonzero_params": int(sum(np.count_nonzero(v) for v in leaves)),
  }
