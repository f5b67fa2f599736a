"""Dynamically Expandable Networks (Yoon, Yang, Lee, Hwang, ICLR 2018).

One call of `learn_task` is one iteration of Algorithm 1:

1. task 0: train everything with L1 sparsity (Eq. 2) and group sparsity
   over the (input, output) channel slices of conv kernels, as proximal
   steps in Adam's metric (`mcl.continual.sparsity`: exact zeros, and
   thresholds that never cancel the optimizer's step);
2. task t > 0, selective retraining: train the new head t alone with L1
   (Eq. 3); breadth-first search from its nonzero weights for the
   sub-network S (`masks.select_subnetwork`); retrain S only, with the
   loss plus l2 * ||W_S - W_S^ref||_2^2 over kernels and biases and no L1
   step (Eq. 4, with the reference code's pull towards the old weights in
   place of the paper's plain ||W_S||^2). Only the connections of S that
   exist are retrained: an exact zero inside S stays zero
   (`masks.existing_connections`; "we retrain the sparse connections"),
   or S stops being sparse and the next search selects the whole network;
3. dynamic expansion: if the validation loss is still above tau, add k
   units to every hidden layer (nonzero outgoing weights, so they can
   learn), train only the weights that touch them with L1 + group lasso
   (one group = one new unit's incoming weights and bias), then remove the
   new units that died;
4. split/duplication (Algorithm 4): the drift of selective retraining
   (trained with the Eq. 6 pull) is measured per incoming weight against
   each unit's anchor, its value at the end of the task that last split or
   created it (`mcl.continual.anchors`; the paper's W^(t-1) lets sub-sigma
   drift add up over tasks), and the pull pulls towards the anchors too;
   every unit above sigma is restored to W^(t-1) and duplicated
   (`surgery.split_units`), then the units of timestamp t and the head are
   retrained (old units stay frozen, so old tasks see only the sub-sigma
   drift, and the Eq. 6 pull, which acts on old units only, has nothing
   left to act on);
5. timestamped inference: `timestamped.timestamped_params`.

Every phase is an early-stopped fit of the runner's `phase.Context`; a
phase that never improves its validation loss returns its start, and the
runner flags a task whose validation loss ends no lower than its untrained
head's. Ablations (Yoon et al. 2018, Sec. 4.2) are switches of
`DENConfig`: `selective_retraining=False` retrains every hidden unit in
step 2; `split=False` skips step 4; `expansion="constant"` (DEN-Constant)
always adds k units, with neither group lasso nor pruning;
`shared_units="frozen"` trains no old unit at all (step 2 trains the head
only, capacity comes from expansion alone). `retrain_zeros=True` and
`drift_reference="previous"` are the two departures from the paper this
code had before issue 21.

Labelled variants (not the paper's method): `split_top_k=k` splits the k
most drifted units of every layer (`den_split_topk`); `recalibrate=True`
subtracts from every old head's bias the offset its logits moved on the
new task's training clips (`den_recal`, `mcl.continual.recalibration`);
`projection="gpm"` projects selective retraining's updates off the old
tasks' activation subspaces (`den_gpm`, `mcl.continual.gpm`).
"""

import dataclasses

import numpy as np

from mcl.continual import (
  anchors,
  den_steps,
  gpm,
  method,
  phase,
  recalibration,
  surgery,
  timestamped,
)
from mcl.models import head_name

EXPANSIONS = ("dynamic", "constant")
SHARED_UNITS = ("retrain", "frozen")
DRIFT_REFERENCES = ("anchor", "previous")
PROJECTIONS = ("none", "gpm")
# Chunks per training clip that `recalibrate` passes through old heads
# and `projection="gpm"` takes a task's activations from.
TRAINING_CLIP_CHUNKS = 4


@dataclasses.dataclass(frozen=True)
class DENConfig:
  """Hyper-parameters of DEN (names as in the paper).

  Attributes:
    l1: lambda of the L1 terms (Eq. 2, 3), in gradient units: a weight
      whose gradient's running mean stays below it is driven to zero
      (`mcl.continual.sparsity`).
    l2: strength of the pull towards the previous task's weights and
      biases in selective retraining (Eq. 4; its drift decides the split,
      so it is also Algorithm 4's Eq. 6 training).
    group_lasso: lambda_g of the group terms (conv connections in task 0,
      new units in expansion), in gradient units per sqrt(group size).
    k: units added to every hidden layer by an expansion.
    tau: expansion threshold on the validation loss after selective
      retraining (nats).
    sigma: split threshold on the semantic drift per incoming weight
      (`surgery.semantic_drift`).
    outgoing_scale: new units' outgoing weights, times LeCun-normal.
    selective_retraining: retrain the BFS sub-network only (False: every
      hidden unit; the "without selective retraining" ablation).
    split: split/duplicate drifted units (False: the ablation without it).
    expansion: "dynamic" (tau-triggered, group-sparse, pruned) or
      "constant" (DEN-Constant: always k units, kept).
    shared_units: "retrain" (the paper) or "frozen" (old units never
      train; a labelled variant, not the paper's method).
    retrain_zeros: selective retraining also trains S's exact zeros
      (False: the paper; True: the behaviour before issue 21).
    drift_reference: "anchor" (each unit's value when last split or
      created, `mcl.continual.anchors`) or "previous" (W^(t-1)), for the
      split test and the Eq. 6 pull.
    split_top_k: > 0: split the k most drifted units of every layer
      instead of those above sigma (`den_split_topk`).
    recalibrate: correct old heads' biases by their logits' offset on the
      new task's training clips (`den_recal`).
    projection: "gpm": selective retraining's updates projected off the
      old tasks' activation subspaces (`den_gpm`); "none".
    gpm_threshold: share of the old tasks' activation energy the GPM bases
      keep, in (0, 1].
    capacity: slots allocated per hidden layer at initialisation, times
      its width, doubled when exhausted (`mcl.continual.slots`); not a
      hyper-parameter of the method: results do not depend on it.
  """

  l1: float
  l2: float
  group_lasso: float
  k: int
  tau: float
  sigma: float
  outgoing_scale: float = 0.1
  selective_retraining: bool = True
  split: bool = True
  expansion: str = "dynamic"
  shared_units: str = "retrain"
  retrain_zeros: bool = False
  drift_reference: str = "anchor"
  split_top_k: int = 0
  recalibrate: bool = False
  projection: str = "none"
  gpm_threshold: float = 0.97
  capacity: float = 2.0

  def __post_init__(self):
    if self.expansion not in EXPANSIONS:
      raise ValueError(
        f"den.expansion must be one of {EXPANSIONS}, not {self.expansion!r}"
      )
    if self.shared_units not in SHARED_UNITS:
      raise ValueError(
        f"den.shared_units must be one of {SHARED_UNITS}, not "
        f"{self.shared_units!r}"
      )
    if self.drift_reference not in DRIFT_REFERENCES:
      raise ValueError(
        f"den.drift_reference must be one of {DRIFT_REFERENCES}, not "
        f"{self.drift_reference!r}"
      )
    if self.projection not in PROJECTIONS:
      raise ValueError(
        f"den.projection must be one of {PROJECTIONS}, not {self.projection!r}"
      )


def learn_task(
  context: phase.Context,
  params: surgery.Params,
  state: dict,
  task: int,
  config: DENConfig,
  rng: np.random.Generator,
) -> tuple[surgery.Params, dict, dict]:
  """One iteration of DEN's Algorithm 1 (see the module docstring).

  Args:
    context: trains under a mask on task `task`'s data.
    params: the tree after task - 1 with head `task` added (for task 0:
      freshly initialised with head 0).
    state: "timestamps" {layer: int32 [units]} (input to output), and
      after task 0 "anchor" and "anchor_task" (`mcl.continual.anchors`)
      and, with `projection="gpm"`, "bases" (`mcl.continual.gpm`).
    task: index of the task being learnt.
    config: DEN hyper-parameters.
    rng: initialiser of the new units.

  Returns:
    The tree, the state after the task, and a JSON-ready record: per
    phase the validation loss before and after, steps; units selected
    (|S| per layer), added, pruned and split; connection sparsity after
    task 0; old heads' recalibration offsets.
  """
  steps = den_steps.Steps(
    context, config, task, tuple(state["timestamps"]), rng
  )
  if task == 0:
    params, state = steps.sparse_training(params, state)
    return params, _remember(context, params, state, task, config), steps.record
  timestamps = state["timestamps"]
  start = (params, timestamps)
  old_params = {n: g for n, g in params.items() if n != steps.head}
  params = steps.selective_retraining(params, timestamps, old_params, state)
  params, timestamps = steps.dynamic_expansion(params, timestamps)
  params, timestamps, split = steps.split_duplication(
    params, timestamps, old_params, state
  )
  if config.recalibrate:
    params, steps.record["recalibration"] = _recalibrate(
      context, *start, params, timestamps, task
    )
  steps.record["units_after"] = surgery.widths(params, steps.layers)
  anchor, anchor_task = anchors.update(
    state["anchor"],
    state["anchor_task"],
    params,
    timestamps,
    steps.layers,
    task,
    split,
  )
  state = {
    **state,
    "timestamps": timestamps,
    "anchor": anchor,
    "anchor_task": anchor_task,
  }
  return params, _remember(context, params, state, task, config), steps.record


def _recalibrate(context, before, before_timestamps, params, timestamps, task):
  """`den_recal`: every old head's bias minus the offset its logits moved
  on task `task`'s training clips; returns the tree and the offsets."""
  layers = tuple(timestamps)
  clips = context.training_clips(task, TRAINING_CLIP_CHUNKS)
  heads_before = tuple(head_name(j) for j in range(task + 1))
  offsets = {}
  for j in range(task):
    old = timestamped.timestamped_params(
      before, before_timestamps, layers, heads_before, j
    )
    new = timestamped.timestamped_params(
      params, timestamps, layers, heads_before, j
    )
    offset = recalibration.head_offset(old, new, j, clips)
    params = recalibration.recalibrate(params, head_name(j), offset)
    offsets[head_name(j)] = offset.tolist()
  return params, offsets


def _remember(context, params, state, task, config):
  """The state with what later tasks need of task `task`: with
  `projection="gpm"`, the bases grown by task `task`'s activations
  (its training clips through its network, the tree at its end)."""
  if config.projection == "none":
    return state
  layers = tuple(state["timestamps"])
  clips = context.training_clips(task, TRAINING_CLIP_CHUNKS)
  inputs = np.concatenate(
    [
      np.asarray(b["inputs"])[np.asarray(b["mask"]) > 0].reshape(
        -1, *np.shape(b["inputs"])[2:]
      )
      for b in clips
    ]
  )
  representations = gpm.layer_inputs(
    params, inputs, layers, np.random.default_rng(task)
  )
  bases = gpm.pad_bases(state.get("bases", {}), params, layers)
  bases = gpm.update_bases(bases, representations, config.gpm_threshold)
  return {**state, "bases": bases}


class DEN(method.Sequential):
  """DEN as a continual method: `learn_task` on the `config.den` settings."""

  section, settings_class = "den", DENConfig

  @property
  def capacity_factor(self):
    return self.settings.capacity

  @property
  def pads(self):
    # GPM's bases follow the compact rows; `den_gpm` trains unpadded.
    return self.settings.projection == "none"

  def learn_task(self, context, params, state, task, rng):
    return learn_task(context, params, state, task.index, self.settings, rng)
