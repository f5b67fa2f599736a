"""The steps of DEN's Algorithm 1 for one task (`mcl.continual.den`).

`Steps` holds what the steps of one task share (the method's context, the
hyper-parameters, the task, the layers DEN grows) and the task's record;
each method is one step of Algorithm 1 (Yoon et al., ICLR 2018) and adds
its figures to `record`: `sparse_training` (task 0, Eq. 2),
`selective_retraining` (Eq. 3 and 4), `dynamic_expansion` (Sec. 3.2) and
`split_duplication` (Algorithm 4, Eq. 5). `mcl.continual.den.learn_task`
calls them in that order.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from mcl.continual import (
  anchors,
  gpm,
  masks,
  method,
  phase,
  regularisers,
  sparsity,
  surgery,
)
from mcl.models import head_name
from mcl.trainer import train

if TYPE_CHECKING:
  from mcl.continual.den import DENConfig


@dataclasses.dataclass
class Steps:
  """The steps of Algorithm 1 for one task; each adds to `record`."""

  context: phase.Context
  config: DENConfig
  task: int
  layers: tuple[str, ...]
  rng: np.random.Generator
  record: dict = dataclasses.field(default_factory=lambda: {"phases": {}})

  @property
  def head(self) -> str:
    return head_name(self.task)

  @property
  def heads(self) -> tuple[str, ...]:
    return tuple(head_name(j) for j in range(self.task + 1))

  def _run(self, name, params, trainable, **kwargs):
    result = self.context.phase(params, trainable, name, **kwargs)
    phases = method.phase_record(**{name: result})["phases"]
    self.record["phases"].update(phases)
    return result.params

  def _new_units(self, params, timestamps):
    """Trains the task's head and its new units only."""
    return masks.new_unit_mask(
      params, timestamps, self.layers, self.task, self.head
    )

  def sparse_training(self, params, state):
    """Task 0: the whole network under L1 and group sparsity (Eq. 2)."""
    config = self.config
    params = self._run(
      "sparse",
      params,
      method.ones(params),
      proximal=train.chain(
        sparsity.l1(config.l1),
        sparsity.connection_groups(config.group_lasso, self.layers),
      ),
    )
    self.record["sparsity"] = sparsity.connection_sparsity(params, self.layers)
    anchor, anchor_task = anchors.initial(params, self.layers)
    return params, {**state, "anchor": anchor, "anchor_task": anchor_task}

  def selective_retraining(self, params, timestamps, old_params, state):
    """The new head alone (Eq. 3), then the subnetwork S it reaches (Eq. 4)."""
    config, layers = self.config, self.layers
    params = self._run(
      "head",
      params,
      self._new_units(params, timestamps),
      # L1 acts where the mask trains (here: head `task` alone); over every
      # kernel, so the proximal term is the same at every task.
      proximal=sparsity.l1(config.l1),
    )
    if config.shared_units == "frozen":
      selected = {n: np.zeros_like(timestamps[n], bool) for n in layers}
    elif config.selective_retraining:
      selected = masks.select_subnetwork(params, layers, self.head)
    else:
      selected = {n: np.ones_like(timestamps[n], bool) for n in layers}
    self.record["selected_units"] = {
      k: int(v.sum()) for k, v in selected.items()
    }
    self.record["units_before"] = surgery.widths(params, layers)
    if config.shared_units != "retrain":
      return params
    trainable = masks.subnetwork_mask(params, layers, selected, self.head)
    if not config.retrain_zeros:
      trainable = masks.existing_connections(trainable, params, layers)
    by_anchor = config.drift_reference == "anchor"
    return self._run(
      "selective",
      params,
      trainable,
      penalty=regularisers.l2_pull(
        state["anchor"] if by_anchor else old_params,
        config.l2,
        names=layers,
        keys=("kernel", "bias"),
      ),
      proximal=projection(state, params, trainable, layers, config),
    )

  def dynamic_expansion(self, params, timestamps):
    """k units per layer when the loss stays above tau; dead ones pruned."""
    config, layers = self.config, self.layers
    constant = config.expansion == "constant"
    expanded = bool(constant or last_loss(self.record) > config.tau)
    self.record["expanded"] = expanded
    if not expanded:
      return params, timestamps
    params, timestamps = surgery.grow(
      params, timestamps, layers, self.heads, config.k, self.task, self.rng,
      outgoing_scale=config.outgoing_scale,
    )  # fmt: skip
    self.record["added_units"] = {n: config.k for n in layers}
    l1 = sparsity.l1(config.l1)  # Where trainable: new units, head `task`.
    groups = sparsity.unit_groups(
      config.group_lasso, masks.units_of_task(timestamps, layers, self.task)
    )
    params = self._run(
      "expand",
      params,
      self._new_units(params, timestamps),
      proximal=l1 if constant else train.chain(l1, groups),
    )
    if constant:
      return params, timestamps
    params, timestamps, removed = surgery.prune_dead_units(
      params, timestamps, layers, self.heads, self.task
    )
    self.record["pruned_units"] = removed
    return params, timestamps

  def split_duplication(self, params, timestamps, old_params, state):
    """Units that drifted past sigma split in two (Eq. 5); the copies train."""
    config = self.config
    if not (config.split and config.shared_units == "retrain"):
      return params, timestamps, {}
    drift = None
    if config.drift_reference == "anchor":
      drift = anchors.drift(
        params, state["anchor"], state["anchor_task"], timestamps, self.layers
      )
    params, timestamps, splits = surgery.split_units(
      params, old_params, timestamps, self.layers, self.heads, self.task,
      config.sigma, drift=drift, top_k=config.split_top_k,
    )  # fmt: skip
    self.record["splits"] = [dataclasses.asdict(s) for s in splits]
    if splits:
      params = self._run("split", params, self._new_units(params, timestamps))
    return params, timestamps, {s.layer: s.units for s in splits}


def projection(state, params, trainable, layers, config):
  """`den_gpm`: selective retraining's change kept orthogonal to the old
  tasks' activation bases (within its trainable rows), or None."""
  if config.projection == "none":
    return None
  bases = gpm.pad_bases(state["bases"], params, layers)
  return gpm.projection(bases, params, layers, trainable)


def last_loss(record: dict) -> float:
  """Validation loss at the end of the latest phase."""
  return list(record["phases"].values())[-1]["validation_loss"]
