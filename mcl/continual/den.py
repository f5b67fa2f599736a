"""Dynamically Expandable Networks (Yoon, Yang, Lee, Hwang, ICLR 2018).

One call of `learn_task` is one iteration of Algorithm 1:

1. task 0: train everything with L1 sparsity (proximal soft-threshold after
   each optimizer step, threshold = learning rate * l1: exact zeros);
2. task t > 0, selective retraining: add and train head t alone with L1;
   breadth-first search from its nonzero weights for the sub-network S;
   retrain S only, with L1 and an L2 pull towards the task t-1 weights
   (the paper writes a plain L2 norm; the pull is the reference code's);
3. dynamic expansion: if the validation loss is still above tau, add k
   units to every hidden layer, train only the weights that touch them with
   L1 + group lasso (one group = one unit's incoming weights and bias,
   proximal group soft-threshold), then
   remove the new units that died;
4. split/duplication: units whose semantic drift exceeds sigma are restored
   and duplicated (`surgery.split_units`), then the weights that touch
   timestamp-t units are retrained;
5. timestamped inference: `timestamped.timestamped_params`.

The training itself is delegated to a `PhaseFn` supplied by the runner,
which knows the data; this module knows the method.
"""

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np

from mcl import train
from mcl.continual import masks, surgery
from mcl.models import head_name


@dataclasses.dataclass(frozen=True)
class DENConfig:
  """Hyper-parameters of DEN (names as in the paper).

  Attributes:
    l1: lambda of the L1 sparsity term (proximal).
    l2: strength of selective retraining's pull towards the previous
      task's weights (`drift_pull`).
    group_lasso: lambda_g of the group sparsity of expansion.
    k: units added to every hidden layer by an expansion.
    tau: expansion threshold on the validation loss (nats).
    sigma: split threshold on the semantic drift (L2 norm).
  """

  l1: float
  l2: float
  group_lasso: float
  k: int
  tau: float
  sigma: float


class PhaseFn(Protocol):
  """Trains `params` on the current task under a mask (see `train.fit`)."""

  def __call__(
    self,
    params: surgery.Params,
    trainable: surgery.Params,
    name: str,
    *,
    penalty: train.Penalty = ...,
    proximal: train.Proximal = ...,
  ) -> train.FitResult: ...


def l1_proximal(threshold: float) -> train.Proximal:
  """Soft-threshold of trainable kernel entries: sign(w) max(|w| - thr, 0).

  The proximal operator of thr * ||W||_1; biases are not penalised.
  """

  def proximal(params, trainable):
    def shrink(path, w, m):
      if path[-1].key != "kernel":
        return w
      soft = jnp.sign(w) * jnp.maximum(jnp.abs(w) - threshold, 0.0)
      return jnp.where(m > 0, soft, w)

    return jax.tree.map_with_path(shrink, params, trainable)

  return proximal


def group_lasso_proximal(
  l1_threshold: float, group_threshold: float, groups: Mapping[str, np.ndarray]
) -> train.Proximal:
  """L1 soft-threshold, then group soft-threshold of the given units.

  Group g (unit g's incoming kernel column and bias) is scaled by
  max(0, 1 - thr / ||w_g||_2): the proximal operator of thr * sum_g ||w_g||.

  Args:
    l1_threshold: learning rate * l1.
    group_threshold: learning rate * group_lasso.
    groups: {layer: bool [units]}, the units that form groups.
  """
  l1 = l1_proximal(l1_threshold)
  groups = {name: jnp.asarray(g, jnp.float32) for name, g in groups.items()}

  def proximal(params, trainable):
    params = dict(l1(params, trainable))
    for name, is_group in groups.items():
      kernel, bias = params[name]["kernel"], params[name]["bias"]
      norm = jnp.sqrt(
        jnp.sum(jnp.square(kernel), axis=tuple(range(kernel.ndim - 1)))
        + jnp.square(bias)
      )
      scale = jnp.maximum(0.0, 1.0 - group_threshold / jnp.maximum(norm, 1e-12))
      scale = jnp.where(is_group > 0, scale, 1.0)
      params[name] = {"kernel": kernel * scale, "bias": bias * scale}
    return params

  return proximal


def drift_pull(
  old_params: surgery.Params, layers: Sequence[str], l2: float
) -> train.Penalty:
  """l2 * sum_l ||W_l - W_l^(t-1)||_2^2 over the hidden layers' kernels.

  The L2 term of selective retraining as the reference code writes it (a
  pull towards the previous task's weights; the paper's selective
  retraining objective writes a plain L2 norm). `old_params` must have the
  current hidden-layer shapes.
  """
  anchors = {name: jnp.asarray(old_params[name]["kernel"]) for name in layers}

  def penalty(params):
    return l2 * sum(
      jnp.sum(jnp.square(params[name]["kernel"] - anchor))
      for name, anchor in anchors.items()
    )

  return penalty


def _ones(params: surgery.Params) -> surgery.Params:
  return jax.tree.map(lambda v: np.ones(v.shape, np.float32), params)


def add_head(
  params: surgery.Params,
  last_layer: str,
  task: int,
  num_classes: int,
  rng: np.random.Generator,
) -> surgery.Params:
  """Adds head `task` (LeCun-normal kernel, zero bias) on `last_layer`."""
  fan_in = params[last_layer]["bias"].shape[0]
  new = dict(params)
  new[head_name(task)] = {
    "kernel": (
      rng.standard_normal((fan_in, num_classes)) / np.sqrt(fan_in)
    ).astype(np.float32),
    "bias": np.zeros(num_classes, np.float32),
  }
  return new


def learn_task(
  phase: PhaseFn,
  params: surgery.Params,
  timestamps: surgery.Timestamps,
  layers: Sequence[str],
  task: int,
  num_classes: int,
  config: DENConfig,
  learning_rate: float,
  rng: np.random.Generator,
) -> tuple[surgery.Params, surgery.Timestamps, dict]:
  """One iteration of DEN's Algorithm 1 (see the module docstring).

  Args:
    phase: trains under a mask on task `task`'s data.
    params: the tree after task - 1 (for task 0: freshly initialised, with
      head 0 already present).
    timestamps: units' timestamps per layer.
    layers: hidden layer names, input to output.
    task: index of the task being learnt.
    num_classes: classes of its head.
    config: DEN hyper-parameters.
    learning_rate: the optimizer's step size (scales the proximal steps).
    rng: initialiser of the new head and units.

  Returns:
    The tree, the timestamps, and a JSON-ready record of the phases.
  """
  l1 = l1_proximal(learning_rate * config.l1)
  record = {"phases": {}}

  def run(name, params, trainable, **kwargs):
    result = phase(params, trainable, name, **kwargs)
    record["phases"][name] = {
      "steps": result.steps,
      "validation_loss": result.validation_loss,
      "validation_accuracy": result.validation_accuracy,
    }
    return result.params

  if task == 0:
    params = run("sparse", params, _ones(params), proximal=l1)
    return params, timestamps, record

  old_params = params
  heads = tuple(head_name(j) for j in range(task + 1))
  params = add_head(params, layers[-1], task, num_classes, rng)
  params = run(
    "head",
    params,
    masks.new_unit_mask(params, timestamps, layers, task, heads[-1]),
    proximal=l1,
  )
  selected = masks.select_subnetwork(params, layers, heads[-1])
  record["selected_units"] = {k: int(v.sum()) for k, v in selected.items()}
  params = run(
    "selective",
    params,
    masks.subnetwork_mask(params, layers, selected, heads[-1]),
    penalty=drift_pull(old_params, layers, config.l2),
    proximal=l1,
  )

  loss = record["phases"]["selective"]["validation_loss"]
  record["expanded"] = bool(loss > config.tau)
  if record["expanded"]:
    params, timestamps = surgery.grow(
      params, timestamps, layers, heads, config.k, task, rng
    )
    params = run(
      "expand",
      params,
      masks.new_unit_mask(params, timestamps, layers, task, heads[-1]),
      proximal=group_lasso_proximal(
        learning_rate * config.l1,
        learning_rate * config.group_lasso,
        masks.units_of_task(timestamps, layers, task),
      ),
    )
    params, timestamps, removed = surgery.prune_dead_units(
      params, timestamps, layers, heads, task
    )
    record["pruned_units"] = removed

  params, timestamps, splits = surgery.split_units(
    params, old_params, timestamps, layers, heads, task, config.sigma
  )
  record["splits"] = [dataclasses.asdict(s) for s in splits]
  if splits:
    params = run(
      "split",
      params,
      masks.new_unit_mask(params, timestamps, layers, task, heads[-1]),
    )
  return params, timestamps, record
