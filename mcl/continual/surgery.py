"""Pure parameter-tree surgery for networks that grow by units.

A network is a chain of hidden layers (`layers`, input to output) followed
by task heads (`heads`). Every layer is `{"kernel": [..., in, out], "bias":
[out]}` (conv kernels are [kh, kw, in, out], dense kernels [in, out]); a
*unit* is an output column: a dense neuron or a conv channel. The consumers
of layer l are layer l+1, or every head for the last hidden layer; their
kernel rows (axis -2) are layer l's units. Global pooling between the conv
and dense layers keeps that row/column correspondence.

Each unit carries a timestamp, the task at which it was added (DEN, Yoon et
al. 2018). Units are only ever appended, and only the current task's units
are ever removed, so the units a task j may use (timestamp <= j) are always
a prefix of every layer: timestamped inference slices that prefix and runs
exactly the shapes and values the network had after task j.

Functions here take numpy trees and return new ones; nothing is mutated,
nothing is trained. They run between tasks, outside jit, on the unit
primitives of `mcl.continual.units` (consumers, appending, removing).
"""

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from mcl.continual import units

Params = dict
Timestamps = dict  # layer name -> int32 [units]


def widths(params: Params, layers: Sequence[str]) -> dict[str, int]:
  """Number of units of every hidden layer."""
  return {name: int(params[name]["bias"].shape[0]) for name in layers}


def grow(
  params: Params,
  timestamps: Timestamps,
  layers: Sequence[str],
  heads: Sequence[str],
  k: int,
  task: int,
  rng: np.random.Generator | None,
  outgoing_scale: float = 0.0,
) -> tuple[Params, Timestamps]:
  """Dynamic expansion: adds k units with timestamp `task` to every layer.

  New units' incoming weights are LeCun-normal (std 1/sqrt(fan_in)) when
  `rng` is given, zero otherwise. Their outgoing weights into the next
  layer and into the last head (the current task's) are `outgoing_scale`
  times LeCun-normal in the consumer's fan-in (zero by default, so that
  the network's outputs are unchanged by the growth); their rows in older
  heads are zero, since no task reads them.
  Either way older tasks' timestamped networks do not contain the new
  units. DEN grows with nonzero outgoing weights: a unit whose outgoing
  weights are all zero gets no gradient into its incoming weights, and
  group sparsity would remove it before it could learn.

  Args:
    params: the tree.
    timestamps: units' timestamps per layer.
    layers: hidden layer names.
    heads: head names, the current task's last.
    k: units added per layer.
    task: timestamp of the new units.
    rng: initialiser of the new weights, or None for zeros.
    outgoing_scale: scale of the outgoing weights' initialisation (needs
      `rng`).

  Returns:
    The grown tree and timestamps.

  Raises:
    ValueError: `outgoing_scale` without `rng`.
  """
  if outgoing_scale and rng is None:
    raise ValueError("grow: nonzero outgoing_scale needs an rng")

  def lecun(shape, fan_in):
    if rng is None:
      return np.zeros(shape, np.float32)
    return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)

  new, stamps = params, dict(timestamps)
  for layer in layers:
    shape = new[layer]["kernel"].shape[:-1] + (k,)
    incoming = lecun(shape, int(np.prod(shape[:-1])))
    outgoing = {}
    for name in units.consumers(layers, heads, layer):
      kernel = new[name]["kernel"]
      rows = kernel.shape[:-2] + (k, kernel.shape[-1])
      fan_in = int(np.prod(kernel.shape[:-1])) + int(np.prod(rows[:-1]))
      # Old heads never read new units: their rows stay zero (drawn all
      # the same, so the random stream does not depend on the task).
      scale = 0.0 if name in heads[:-1] else outgoing_scale
      outgoing[name] = (scale * lecun(rows, fan_in)).astype(np.float32)
    new = units.add_units(
      new, layers, heads, layer, incoming, np.zeros(k, np.float32), outgoing
    )
    stamps[layer] = np.concatenate([stamps[layer], np.full(k, task, np.int32)])
  return new, stamps


def prune_dead_units(
  params: Params,
  timestamps: Timestamps,
  layers: Sequence[str],
  heads: Sequence[str],
  task: int,
) -> tuple[Params, Timestamps, dict[str, int]]:
  """Removes units of timestamp `task` that group lasso switched off.

  A unit is dead when its incoming group (kernel column and bias) is all
  zero, or when all its outgoing weights that a task reads are zero (rows
  into the next layer, or into the last head, the current task's; older
  heads never read a unit of timestamp `task`): either way it cannot
  affect any output. Removing a unit can kill others (a unit whose only
  outgoing weights went to removed units), so passes repeat until none is
  removed. Older units are never removed.

  Args:
    params: the tree.
    timestamps: units' timestamps per layer.
    layers: hidden layer names.
    heads: head names, head `task` last.
    task: the current task.

  Returns:
    The tree, the timestamps and {layer: units removed}.
  """
  new, stamps = params, dict(timestamps)
  removed = {layer: 0 for layer in layers}
  changed = True
  while changed:
    changed = False
    for layer in layers:
      outgoing = np.zeros(new[layer]["bias"].shape, bool)
      for name in units.consumers(layers, heads, layer):
        if name in heads[:-1]:
          continue
        kernel = new[name]["kernel"]
        axes = tuple(range(kernel.ndim - 2)) + (kernel.ndim - 1,)
        outgoing |= np.any(kernel != 0, axis=axes)
      dead = (stamps[layer] == task) & (
        (units.group_norms(new, layer) == 0) | ~outgoing
      )
      if dead.any():
        new = units.keep_units(new, layers, heads, layer, ~dead)
        stamps[layer] = stamps[layer][~dead]
        removed[layer] += int(dead.sum())
        changed = True
  return new, stamps, removed


def semantic_drift(
  params: Params,
  reference: Params,
  layers: Sequence[str],
  counted_rows: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
  """Semantic drift per incoming weight of every unit of `reference`.

  rho_i = ||w_i - w_i^ref||_2 / sqrt(n_i) over unit i's incoming kernel
  column (the rows `counted_rows` counts for it, all of `reference`'s rows
  by default) and bias, n_i their number. Yoon et al. (2018, Sec. 3,
  network split/duplication) threshold the plain L2 norm against
  W^(t-1); divided by sqrt(n_i) it is the root-mean-square change of one
  weight, comparable between a first conv layer (9 taps + bias per unit)
  and a dense layer with hundreds of inputs, so one sigma serves every
  layer. `reference` is W^(t-1), or each unit's own anchor
  (`mcl.continual.anchors`).

  Args:
    params: the tree now (layers at least as wide as `reference`'s).
    reference: the tree to compare with; its widths say which units and
      rows exist.
    layers: hidden layer names.
    counted_rows: {layer: bool [reference rows, reference units]}, the
      incoming rows that count for each unit; None: all.

  Returns:
    {layer: float [reference units]}.
  """
  drift = {}
  for name in layers:
    old_kernel = reference[name]["kernel"]
    n_in, n_out = old_kernel.shape[-2:]
    rows = (
      np.ones((n_in, n_out), bool)
      if counted_rows is None
      else counted_rows[name]
    )
    delta = params[name]["kernel"][..., :n_in, :n_out] - old_kernel
    squares = np.sum(
      np.square(delta, dtype=np.float64) * rows,
      axis=tuple(range(delta.ndim - 1)),
    )
    bias_delta = params[name]["bias"][:n_out] - reference[name]["bias"]
    taps = int(np.prod(old_kernel.shape[:-2]))
    size = taps * rows.sum(axis=0) + 1
    drift[name] = np.sqrt(
      (squares + np.square(bias_delta, dtype=np.float64)) / size
    )
  return drift


@dataclasses.dataclass(frozen=True)
class SplitRecord:
  """Units split in one layer: original index, duplicate index, drift."""

  layer: str
  units: tuple[int, ...]
  duplicates: tuple[int, ...]
  drifts: tuple[float, ...]


def split_units(
  params: Params,
  old_params: Params,
  timestamps: Timestamps,
  layers: Sequence[str],
  heads: Sequence[str],
  task: int,
  sigma: float,
  drift: Mapping[str, np.ndarray] | None = None,
  top_k: int = 0,
) -> tuple[Params, Timestamps, list[SplitRecord]]:
  """Network split/duplication of units whose semantic drift exceeds sigma.

  For every old unit i with rho_i > sigma (see `semantic_drift`; with
  `top_k`, the k units of each layer that drifted most, whatever sigma:
  the `den_split_topk` variant): unit i is
  restored to its incoming weights and bias at t-1 (zero from units added
  since), so old tasks keep using it; a duplicate with timestamp `task` is
  appended carrying i's current incoming weights. Wiring of the
  duplicate's outputs, so that task `task` sees the new version of i:
  - consumers of timestamp `task` (new units, later duplicates, the new
    head) have their row of i moved to the duplicate;
  - older consumers keep their row of i and get a zero row for the
    duplicate, so the drifted version is invisible to old tasks.
  When every drifted unit is split, old tasks' timestamped networks equal
  those of t-1 exactly.

  Args:
    params: the tree after training task `task`.
    old_params: the tree after task `task` - 1 (a prefix of `params`).
    timestamps: units' timestamps per layer.
    layers: hidden layer names.
    heads: head names; head `task` must be the last.
    task: the current task.
    sigma: drift threshold (per incoming weight, see `semantic_drift`).
    drift: {layer: float [old units]}, the drift to threshold; None: the
      drift against `old_params` (W^(t-1)).
    top_k: > 0: split the `top_k` most drifted units (of nonzero drift)
      of every layer instead of those above sigma.

  Returns:
    The tree, the timestamps, and one record per layer with splits.
  """
  new, stamps, records = units.copy(params), dict(timestamps), []
  if drift is None:
    drift = semantic_drift(params, old_params, layers)
  previous_pairs: list[tuple[int, int]] = []
  for layer in layers:
    originals = _units_to_split(drift[layer], sigma, top_k)
    if originals.size == 0:
      previous_pairs = []
      continue
    incoming, bias = _duplicate_inputs(new, layer, originals, previous_pairs)
    _restore_originals(new, old_params, layer, originals)
    outgoing = _take_new_rows(
      new, stamps, layers, heads, layer, originals, task
    )
    first = new[layer]["bias"].shape[0]
    new = units.add_units(new, layers, heads, layer, incoming, bias, outgoing)
    stamps[layer] = np.concatenate(
      [stamps[layer], np.full(originals.size, task, np.int32)]
    )
    duplicates = tuple(range(first, first + originals.size))
    previous_pairs = list(zip(originals.tolist(), duplicates, strict=True))
    records.append(
      SplitRecord(
        layer=layer,
        units=tuple(originals.tolist()),
        duplicates=duplicates,
        drifts=tuple(float(d) for d in drift[layer][originals]),
      )
    )
  return new, stamps, records


def _units_to_split(drift: np.ndarray, sigma: float, top_k: int) -> np.ndarray:
  """The units of one layer to split: int [n], ascending.

  Args:
    drift: float [old units] (see `split_units`).
    sigma: the threshold, when `top_k` is 0.
    top_k: > 0: the `top_k` most drifted units of nonzero drift instead.
  """
  if top_k > 0:
    ranked = np.argsort(-drift, kind="stable")[:top_k]
    return np.sort(ranked[drift[ranked] > 0])
  return np.flatnonzero(drift > sigma)


def _duplicate_inputs(
  params: Params,
  layer: str,
  originals: np.ndarray,
  previous_pairs: Sequence[tuple[int, int]],
) -> tuple[np.ndarray, np.ndarray]:
  """The duplicates' incoming kernel columns [..., in, n] and biases [n]:
  copies of the originals' current ones, their rows of the previous
  layer's split units moved to those units' duplicates (so that they read
  the new versions).

  Args:
    params: the tree, the previous layer's duplicates appended.
    layer: the layer being split.
    originals: int [n], its units to split.
    previous_pairs: (original, duplicate) of the previous layer's splits,
      empty when it had none.
  """
  incoming = params[layer]["kernel"][..., originals].copy()
  bias = params[layer]["bias"][originals].copy()
  for original, duplicate in previous_pairs:
    incoming[..., duplicate, :] = incoming[..., original, :]
    incoming[..., original, :] = 0
  return incoming, bias


def _restore_originals(
  params: Params, old_params: Params, layer: str, originals: np.ndarray
) -> None:
  """Restores the originals' incoming weights and biases to those of
  `old_params` (zero from the rows added since); in place, on
  `split_units`' own copy of the tree."""
  old_kernel = old_params[layer]["kernel"]
  n_in = old_kernel.shape[-2]
  params[layer]["kernel"][..., originals] = 0
  params[layer]["kernel"][..., :n_in, originals] = old_kernel[..., originals]
  params[layer]["bias"][originals] = old_params[layer]["bias"][originals]


def _take_new_rows(
  params: Params,
  timestamps: Timestamps,
  layers: Sequence[str],
  heads: Sequence[str],
  layer: str,
  originals: np.ndarray,
  task: int,
) -> dict[str, np.ndarray]:
  """The duplicates' outgoing rows, taken from the originals' rows in the
  consumers' columns of timestamp `task` (new units, later duplicates,
  head `task`), which are zeroed there; older columns keep the originals'
  rows and get zero rows for the duplicates. In place, on `split_units`'
  own copy of the tree.

  Returns:
    {consumer: float32 [..., n, out]}, for `units.add_units`.
  """
  outgoing = {}
  for name in units.consumers(layers, heads, layer):
    kernel = params[name]["kernel"]
    is_new = (
      timestamps[name] == task
      if name in timestamps
      else np.full(kernel.shape[-1], name == heads[task])
    )
    rows = kernel[..., originals, :] * is_new
    kernel[..., originals, :] = kernel[..., originals, :] * ~is_new
    outgoing[name] = rows.astype(np.float32)
  return outgoing


def add_head(
  params: Params,
  last_layer: str,
  head: str,
  num_classes: int,
  rng: np.random.Generator,
) -> Params:
  """Adds a task head on `last_layer`: LeCun-normal kernel, zero bias."""
  fan_in = params[last_layer]["bias"].shape[0]
  new = dict(params)
  new[head] = {
    "kernel": (
      rng.standard_normal((fan_in, num_classes)) / np.sqrt(fan_in)
    ).astype(np.float32),
    "bias": np.zeros(num_classes, np.float32),
  }
  return new
