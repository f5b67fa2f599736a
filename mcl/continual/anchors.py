"""Each unit's own past: the reference of DEN's semantic drift.

Yoon et al. (2018, Sec. 3) measure a unit's drift against W^(t-1). Drift
that stays below sigma at every task then adds up unseen, while
timestamped inference promises task j the network it was trained with.
So each hidden unit keeps an *anchor*: its incoming weights and bias at
the end of the task that last split or created it, and `anchor_task`,
that task. Algorithm 4's split test and the Eq. 6 pull then measure a
unit against its anchor: a unit that drifts 0.6 sigma a task is split at
its second task instead of never.

A unit anchored at task a counts only the incoming rows of units that
existed at a (timestamp <= a; every input row of the first layer): rows
of later units are invisible to the tasks that anchored it.

State layout (numpy, saved with the method state): `anchor` {layer:
{"kernel", "bias"}} with the shapes of the tree at the end of the last
task, `anchor_task` {layer: int32 [units]}. Pure functions, between
tasks, outside jit.
"""

from collections.abc import Mapping, Sequence

import numpy as np

from mcl.continual import surgery


def initial(
  params: surgery.Params, layers: Sequence[str]
) -> tuple[surgery.Params, dict[str, np.ndarray]]:
  """Anchors after task 0: every unit at its value, anchored at task 0."""
  anchor = {n: {k: np.array(v) for k, v in params[n].items()} for n in layers}
  anchor_task = {
    n: np.zeros(params[n]["bias"].shape[0], np.int32) for n in layers
  }
  return anchor, anchor_task


def counted_rows(
  anchor: surgery.Params,
  anchor_task: Mapping[str, np.ndarray],
  timestamps: surgery.Timestamps,
  layers: Sequence[str],
) -> dict[str, np.ndarray]:
  """{layer: bool [anchor rows, anchor units]}: the incoming rows that
  exist in each unit's anchor (source timestamp <= its anchor task)."""
  rows = {}
  for i, name in enumerate(layers):
    n_in, n_out = anchor[name]["kernel"].shape[-2:]
    if i == 0:
      rows[name] = np.ones((n_in, n_out), bool)
      continue
    sources = timestamps[layers[i - 1]][:n_in]
    rows[name] = sources[:, None] <= anchor_task[name][None, :n_out]
  return rows


def drift(
  params: surgery.Params,
  anchor: surgery.Params,
  anchor_task: Mapping[str, np.ndarray],
  timestamps: surgery.Timestamps,
  layers: Sequence[str],
) -> dict[str, np.ndarray]:
  """Semantic drift of every anchored unit against its anchor.

  Returns:
    {layer: float [anchored units]}, per incoming weight
    (`surgery.semantic_drift` over `counted_rows`).
  """
  return surgery.semantic_drift(
    params,
    anchor,
    layers,
    counted_rows(anchor, anchor_task, timestamps, layers),
  )


def update(
  anchor: surgery.Params,
  anchor_task: Mapping[str, np.ndarray],
  params: surgery.Params,
  timestamps: surgery.Timestamps,
  layers: Sequence[str],
  task: int,
  split: Mapping[str, Sequence[int]],
) -> tuple[surgery.Params, dict[str, np.ndarray]]:
  """Anchors at the end of task `task`.

  Units created at `task` (expansion, duplicates) and the originals of
  the units split at `task` are anchored at their current value; every
  other unit keeps its anchor (its rows of units that did not exist then
  take their current values, which no count of `counted_rows` reads).

  Args:
    anchor, anchor_task: the anchors after task `task` - 1.
    params: the tree at the end of task `task`.
    timestamps: the units' timestamps at the end of task `task`.
    layers: hidden layer names.
    task: the task just learnt.
    split: {layer: original indices of the units split at `task`}.

  Returns:
    The new (anchor, anchor_task), with the shapes of `params`.

  Raises:
    ValueError: a layer's units past the anchored ones are not all of
      timestamp `task` (a tree not built by `mcl.continual.surgery`).
  """
  new_anchor, new_task = {}, {}
  for name in layers:
    kernel = np.array(params[name]["kernel"])
    bias = np.array(params[name]["bias"])
    old_kernel = anchor[name]["kernel"]
    n_in, n_out = old_kernel.shape[-2:]
    stamps = np.array(anchor_task[name][:n_out])
    keep = np.ones(n_out, bool)
    keep[list(split.get(name, ()))] = False
    stamps[~keep] = task
    kernel[..., :n_in, :n_out][..., keep] = old_kernel[..., keep]
    bias[:n_out][keep] = anchor[name]["bias"][keep]
    width = bias.shape[0]
    new_task[name] = np.concatenate(
      [stamps, np.full(width - n_out, task, np.int32)]
    ).astype(np.int32)
    if np.any(timestamps[name][n_out:] != task):
      raise ValueError(
        f"{name}: units after the anchored prefix must be task {task}'s "
        "(surgery only appends and prunes the current task's units)"
      )
    new_anchor[name] = {"kernel": kernel, "bias": bias}
  return new_anchor, new_task
