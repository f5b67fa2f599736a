"""Capacity slots: a growing network in array shapes that do not change.

XLA compiles once per shape, and on GPU/TPU a compilation costs more than
a phase of the continual networks. A `Slots` gives every hidden layer a
capacity (the units it can hold) and lists every task head of the run;
`pad` writes a method's compact tree (`mcl.continual.surgery`: every unit
live, in slot order) into arrays of those shapes, free slots and the
heads of tasks not begun exact zeros, and `unpad` reads the live part
back. Surgery only appends units and removes the current task's newest
ones, so a unit keeps its slot from the task that created it: expansion
and split write into the next free slots, pruning frees the last ones.

Free slots stay exact zeros through a phase: their trainable mask is 0
(no gradient, no update, no proximal step), their incoming weights and
bias are zero, so they output relu(0) = 0 and add nothing downstream.
They are not parameters: `mcl.continual.capacity` counts the compact
tree.

Timestamped inference is a mask over the padded arrays (`timestamped`):
a unit of timestamp > j has its incoming weights and bias zeroed, so it
outputs 0 and the network equals the sliced one of
`mcl.continual.timestamped` (Yoon et al. 2018, Sec. 3) up to the order of
float summation over the zero terms.

Capacity (`capacity`): a layer that does not grow is allocated at its
width; a growing method's layers start at ceil(factor * width) and double
when exhausted, so the shapes a run compiles for grow with the logarithm
of its growth, not with its tasks.
"""

import dataclasses
import math
import threading
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from mcl.models import head_name
from mcl.trainer import train

Params = dict


def capacity(initial: int, width: int, factor: float | None) -> int:
  """Slots of a layer of `initial` units now `width` wide.

  Args:
    initial: the layer's width at initialisation.
    width: its width now.
    factor: None for a layer that never grows (capacity = width);
      otherwise the first allocation is ceil(factor * initial), doubled
      until it holds `width`.

  Raises:
    ValueError: factor below 1.
  """
  if factor is None:
    return width
  if factor < 1:
    raise ValueError(f"capacity factor must be >= 1, not {factor}")
  slots = math.ceil(factor * initial)
  while slots < width:
    slots *= 2
  return slots


@dataclasses.dataclass(frozen=True)
class Slots:
  """The padded shapes of a run's network.

  Attributes:
    layers: hidden layer names, input to output (`conv_*` then `dense_*`).
    units: slots of every hidden layer, in `layers` order.
    head_sizes: classes of every task head of the run, in task order.
  """

  layers: tuple[str, ...]
  units: tuple[int, ...]
  head_sizes: tuple[int, ...]

  @property
  def capacities(self) -> dict[str, int]:
    return dict(zip(self.layers, self.units, strict=True))

  @property
  def heads(self) -> tuple[int, ...]:
    """Every task id of the run (the loss of a padded phase reads all
    heads: an id that no example carries adds exactly zero)."""
    return tuple(range(len(self.head_sizes)))


def plan(
  params: Params,
  layers: Sequence[str],
  initial: Mapping[str, int],
  head_sizes: Sequence[int],
  factor: float | None,
) -> Slots:
  """The slots that hold `params` (see `capacity`).

  Args:
    params: the compact tree.
    layers: its hidden layers, input to output.
    initial: {layer: width at initialisation}.
    head_sizes: classes of every task of the run.
    factor: the growth allocation (None: layers never grow).

  Raises:
    ValueError: the tree has more heads than the run has tasks.
  """
  heads = sum(1 for name in params if name.startswith("head_"))
  if heads > len(head_sizes):
    raise ValueError(f"{heads} heads for a run of {len(head_sizes)} tasks")
  units = tuple(
    capacity(initial[n], int(params[n]["bias"].shape[0]), factor)
    for n in layers
  )
  return Slots(tuple(layers), units, tuple(head_sizes))


def _pad_to(x: np.ndarray, axis: int, size: int) -> np.ndarray:
  width = [(0, 0)] * x.ndim
  width[axis] = (0, size - x.shape[axis])
  if width[axis][1] < 0:
    raise ValueError(f"{x.shape[axis]} units do not fit {size} slots")
  return np.pad(x, width)


def _pad_group(name: str, group: Mapping, slots: Slots) -> dict:
  """One group {kernel [..., in, out], bias [out]} in its slots."""
  caps = slots.capacities
  out = {k: np.asarray(v) for k, v in group.items()}
  if name in caps:
    i = slots.layers.index(name)
    out["kernel"] = _pad_to(out["kernel"], -1, caps[name])
    if i > 0:
      out["kernel"] = _pad_to(out["kernel"], -2, caps[slots.layers[i - 1]])
    if "bias" in out:
      out["bias"] = _pad_to(out["bias"], 0, caps[name])
  elif name.startswith("head_") and "kernel" in out:
    out["kernel"] = _pad_to(out["kernel"], -2, caps[slots.layers[-1]])
  return out


def pad(tree: Params, slots: Slots) -> Params:
  """A compact tree (parameters or a 0./1. mask) in the run's slots.

  Every hidden layer's units fill its first slots, the rest are zero;
  heads of tasks not begun are zero groups, so the tree's structure is
  the same at every task.

  Args:
    tree: {group: {"kernel": [..., in, out], "bias": [out]}}.
    slots: the padded shapes.

  Returns:
    A numpy tree of `slots`' shapes.

  Raises:
    ValueError: a layer has more units than slots.
  """
  out = {name: _pad_group(name, g, slots) for name, g in tree.items()}
  rows = slots.units[-1]
  for t, n in enumerate(slots.head_sizes):
    out.setdefault(
      head_name(t),
      {
        "kernel": np.zeros((rows, n), np.float32),
        "bias": np.zeros(n, np.float32),
      },
    )
  return out


def unpad(padded: Params, like: Params) -> Params:
  """The live part of a padded tree: `like`'s groups and shapes.

  Args:
    padded: a tree from `pad` (or trained from one).
    like: the compact tree it was padded from.
  """
  out = {}
  for name, group in like.items():
    out[name] = {
      k: np.asarray(padded[name][k])[tuple(slice(0, s) for s in np.shape(v))]
      for k, v in group.items()
    }
  return out


def _pad_args(x, slots: Slots):
  """A term's arguments in the slots: groups like parameter groups are
  padded as `pad` does, {layer: [units]} vectors to the layer's slots."""
  if isinstance(x, Mapping):
    caps = slots.capacities
    out = {}
    for k, v in x.items():
      if (k in caps or str(k).startswith("head_")) and isinstance(v, Mapping):
        group = _pad_group(k, v, slots)
        out[k] = {n: jnp.asarray(a) for n, a in group.items()}
      elif k in caps and np.ndim(v) == 1:
        out[k] = jnp.asarray(_pad_to(np.asarray(v), 0, caps[k]))
      else:
        out[k] = _pad_args(v, slots)
    return out
  if isinstance(x, (tuple, list)):
    return type(x)(_pad_args(v, slots) for v in x)
  return x


def pad_term(term: train.Term | None, slots: Slots) -> train.Term | None:
  """A penalty or proximal `Term` whose arrays are padded to `slots`.

  Anchors ({group: {"kernel", "bias"}}) are padded with zeros like the
  parameters (a free slot equals its zero anchor: no pull); per-unit
  vectors ({layer: [units]}, e.g. group-lasso groups) with False / 0.
  A term whose function holds shapes (a module) cannot be padded: the
  methods that use one train unpadded (`Sequential.pads`).
  """
  if term is None:
    return None
  return train.Term(term.fn, _pad_args(term.args, slots))


def unit_mask(
  timestamps: Mapping[str, np.ndarray], slots: Slots, task: int
) -> dict[str, np.ndarray]:
  """{layer: float32 [slots]}: 1 for the units task `task` uses (live,
  timestamp <= task), 0 for later units and free slots."""
  caps = slots.capacities
  out = {}
  for name in slots.layers:
    keep = (np.asarray(timestamps[name]) <= task).astype(np.float32)
    out[name] = _pad_to(keep, 0, caps[name])
  return out


def timestamped(padded: Params, keep: Mapping[str, np.ndarray]) -> Params:
  """Timestamped inference as a mask: the units `keep` drops have their
  incoming weights and bias zeroed (they output 0), shapes unchanged.

  Args:
    padded: a tree from `pad`.
    keep: `unit_mask` of the task.
  """
  out = dict(padded)
  for name, k in keep.items():
    out[name] = {
      "kernel": padded[name]["kernel"] * k,
      "bias": padded[name]["bias"] * k,
    }
  return out


class Floor:
  """Capacities shared by the runs of a replica group
  (`mcl.experiments.continual.replica_group`): every phase's slots are
  raised to the largest any run of the group has needed, so the runs'
  phases keep one shape and a run's overflow re-allocates the others at
  their next phase instead of compiling a step per capacity per run.
  Free slots add exact zeros, so the results do not change (up to the
  order of float summation over them)."""

  def __init__(self):
    self._units: dict[tuple[str, ...], tuple[int, ...]] = {}
    self._lock = threading.Lock()

  def raise_to(self, slots: Slots) -> Slots:
    """`slots` with every layer at least the group's capacity."""
    with self._lock:
      units = tuple(
        max(a, b)
        for a, b in zip(
          slots.units, self._units.get(slots.layers, slots.units), strict=True
        )
      )
      self._units[slots.layers] = units
    return dataclasses.replace(slots, units=units)


class PaddedContext:
  """A `phase.Context` whose phases train the tree in its slots.

  `phase` pads the parameters, the trainable mask (free slots 0) and the
  terms, trains every head's loss (`Slots.heads`), and returns the result
  with the live part of the trained tree; everything else is the wrapped
  context's. When the context's fitter is a replica group's, its
  `slot_floor` (a `Floor`) raises the slots to the group's.
  """

  def __init__(self, context, slots_of):
    """Args: the runner's context; `slots_of(params) -> Slots`."""
    self._context = context
    self._slots_of = slots_of

  def __getattr__(self, name):
    return getattr(self._context, name)

  def phase(self, params, trainable, name, *, penalty=None, proximal=None,
            heads=None, **kwargs):  # fmt: skip
    del heads  # Every head's loss: ids without examples add zero.
    slots = self._slots_of(params)
    fitter = getattr(self._context, "fitter", None)
    floor = getattr(fitter, "slot_floor", None)
    if floor is not None:
      slots = floor.raise_to(slots)
    result = self._context.phase(
      pad(params, slots),
      pad(trainable, slots),
      name,
      penalty=pad_term(penalty, slots),
      proximal=pad_term(proximal, slots),
      heads=slots.heads,
      **kwargs,
    )
    variables = {**result.variables, "params": unpad(result.params, params)}
    return dataclasses.replace(result, variables=variables)
