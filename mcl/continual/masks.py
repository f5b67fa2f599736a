"""Which entries of a parameter tree a DEN phase may train.

A trainable mask is a pytree like the parameters with 0./1. entries (see
`mcl.trainer.train.train_step`). The masks are built from per-unit rules on the
chain of hidden layers described in `mcl.continual.surgery`: selective
retraining's sub-network, found by breadth-first search from a new head,
and the weights that touch the units of the current task. Pure numpy,
between tasks, outside jit.
"""

from collections.abc import Mapping, Sequence

import numpy as np

from mcl.continual.surgery import Params, Timestamps


def select_subnetwork(
  params: Params, layers: Sequence[str], head: str
) -> dict[str, np.ndarray]:
  """DEN's breadth-first search for the units a new head depends on.

  Starting from the units with a nonzero weight into any output of `head`
  (every output column, not only the first), a unit of layer l-1 is
  selected when it has a nonzero weight into a selected unit of layer l;
  for conv layers a channel pair is connected when its kernel slice is
  nonzero (Yoon et al. 2018, Sec. 3, selective retraining).

  Args:
    params: the tree, after the sparse training of `head`.
    layers: hidden layer names.
    head: the new task's head.

  Returns:
    {layer: bool [units]} of selected units.
  """
  selected = {}
  reach = np.any(params[head]["kernel"] != 0, axis=-1)
  for i in range(len(layers) - 1, -1, -1):
    selected[layers[i]] = reach
    kernel = params[layers[i]]["kernel"]
    nonzero = np.any(kernel != 0, axis=tuple(range(kernel.ndim - 2)))
    reach = np.any(nonzero[:, reach], axis=1)
  return {name: selected[name] for name in layers}


def _mask(
  params: Params,
  layers: Sequence[str],
  units: Mapping[str, np.ndarray],
  combine,
  input_rows: bool,
  head: str,
) -> Params:
  """0./1. mask tree from a per-unit rule.

  kernel[..., a, b] = combine(units[previous layer][a], units[layer][b]),
  with `input_rows` standing for the input channels of the first layer;
  bias[b] = units[layer][b]; `head` all ones, every other head zeros.
  """
  mask = {}
  rows = None
  for name in layers:
    kernel = params[name]["kernel"]
    if rows is None:
      rows = np.full(kernel.shape[-2], input_rows)
    cells = combine(rows[:, None], units[name][None, :])
    mask[name] = {
      "kernel": np.broadcast_to(cells, kernel.shape).astype(np.float32),
      "bias": units[name].astype(np.float32),
    }
    rows = units[name]
  for name in params:
    if name not in mask:
      mask[name] = {
        k: np.full(v.shape, float(name == head), np.float32)
        for k, v in params[name].items()
      }
  return mask


def subnetwork_mask(
  params: Params,
  layers: Sequence[str],
  selected: Mapping[str, np.ndarray],
  head: str,
) -> Params:
  """Trainable mask of selective retraining.

  A kernel entry is trainable when it connects two selected units (the
  input counts as selected); a bias when its unit is selected; `head` is
  trainable and every other head frozen.
  """
  return _mask(params, layers, selected, np.logical_and, True, head)


def units_of_task(
  timestamps: Timestamps, layers: Sequence[str], task: int
) -> dict[str, np.ndarray]:
  """{layer: bool [units]}, True for the units added at task `task`."""
  return {name: timestamps[name] == task for name in layers}


def new_unit_mask(
  params: Params,
  timestamps: Timestamps,
  layers: Sequence[str],
  task: int,
  head: str,
) -> Params:
  """Trainable mask of the weights only task `task` and later can see.

  A kernel entry is trainable when its source or its destination unit has
  timestamp `task`; a bias when its unit has; `head` is trainable. Older
  tasks' timestamped networks contain none of these entries, so training
  them cannot change old tasks' outputs.
  """
  fresh = units_of_task(timestamps, layers, task)
  return _mask(params, layers, fresh, np.logical_or, False, head)


def existing_connections(
  mask: Params, params: Params, layers: Sequence[str]
) -> Params:
  """`mask` without the exact zeros of the hidden layers' kernels.

  Selective retraining retrains the connections of S that exist (Yoon et
  al. 2018, Sec. 3: Eq. 4 has no L1 term, so a zero it trained would
  leave zero for good and the next breadth-first search would select
  nearly everything). Biases and heads keep their mask.
  """
  out = dict(mask)
  for name in layers:
    nonzero = (params[name]["kernel"] != 0).astype(np.float32)
    out[name] = {**mask[name], "kernel": mask[name]["kernel"] * nonzero}
  return out
