"""Dynamically Expandable Networks (Yoon, Yang, Lee, Hwang, ICLR 2018).

One call of `learn_task` is one iteration of Algorithm 1:

1. task 0: train everything with L1 sparsity (proximal soft-threshold after
   each optimizer step, threshold = learning rate * l1: exact zeros);
2. task t > 0, selective retraining: train the new head t alone with L1;
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

The training itself is delegated to the runner's `method.Context`, which
knows the data; this module knows the method. Ablations (Yoon et al. 2018,
Sec. 4.2) are switches of `DENConfig`: `selective_retraining=False`
retrains every hidden unit in step 2; `split=False` skips step 4;
`expansion="constant"` (DEN-Constant) always adds k units, with neither
group lasso nor pruning.
"""

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from mcl import train
from mcl.continual import masks, method, regularisers, surgery
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
    selective_retraining: retrain the BFS sub-network only (False: every
      hidden unit; the "without selective retraining" ablation).
    split: split/duplicate drifted units (False: the ablation without it).
    expansion: "dynamic" (tau-triggered, group-sparse, pruned) or
      "constant" (DEN-Constant: always k units, kept).
  """

  l1: float
  l2: float
  group_lasso: float
  k: int
  tau: float
  sigma: float
  selective_retraining: bool = True
  split: bool = True
  expansion: str = "dynamic"

  def __post_init__(self):
    if self.expansion not in ("dynamic", "constant"):
      raise ValueError(
        f"den.expansion must be 'dynamic' or 'constant', not {self.expansion!r}"
      )


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


def learn_task(
  context: method.Context,
  params: surgery.Params,
  timestamps: surgery.Timestamps,
  task: int,
  config: DENConfig,
  rng: np.random.Generator,
) -> tuple[surgery.Params, surgery.Timestamps, dict]:
  """One iteration of DEN's Algorithm 1 (see the module docstring).

  Args:
    context: trains under a mask on task `task`'s data.
    params: the tree after task - 1 with head `task` added (for task 0:
      freshly initialised with head 0).
    timestamps: units' timestamps per hidden layer, input to output.
    task: index of the task being learnt.
    config: DEN hyper-parameters.
    rng: initialiser of the new units.

  Returns:
    The tree, the timestamps, and a JSON-ready record of the phases.
  """
  layers = tuple(timestamps)
  learning_rate = context.learning_rate
  l1 = l1_proximal(learning_rate * config.l1)
  record = {"phases": {}}

  def run(name, params, trainable, **kwargs):
    result = context.phase(params, trainable, name, **kwargs)
    record["phases"].update(method.phase_record(**{name: result})["phases"])
    return result.params

  if task == 0:
    params = run("sparse", params, method.ones(params), proximal=l1)
    return params, timestamps, record

  head = head_name(task)
  old_params = {n: g for n, g in params.items() if n != head}
  heads = tuple(head_name(j) for j in range(task + 1))
  params = run(
    "head",
    params,
    masks.new_unit_mask(params, timestamps, layers, task, head),
    proximal=l1,
  )
  if config.selective_retraining:
    selected = masks.select_subnetwork(params, layers, head)
  else:
    selected = {n: np.ones_like(timestamps[n], bool) for n in layers}
  record["selected_units"] = {k: int(v.sum()) for k, v in selected.items()}
  params = run(
    "selective",
    params,
    masks.subnetwork_mask(params, layers, selected, head),
    penalty=regularisers.l2_pull(old_params, config.l2, names=layers),
    proximal=l1,
  )

  loss = record["phases"]["selective"]["validation_loss"]
  constant = config.expansion == "constant"
  record["expanded"] = bool(constant or loss > config.tau)
  if record["expanded"]:
    params, timestamps = surgery.grow(
      params, timestamps, layers, heads, config.k, task, rng
    )
    params = run(
      "expand",
      params,
      masks.new_unit_mask(params, timestamps, layers, task, head),
      proximal=l1
      if constant
      else group_lasso_proximal(
        learning_rate * config.l1,
        learning_rate * config.group_lasso,
        masks.units_of_task(timestamps, layers, task),
      ),
    )
    if not constant:
      params, timestamps, removed = surgery.prune_dead_units(
        params, timestamps, layers, heads, task
      )
      record["pruned_units"] = removed

  if not config.split:
    return params, timestamps, record
  params, timestamps, splits = surgery.split_units(
    params, old_params, timestamps, layers, heads, task, config.sigma
  )
  record["splits"] = [dataclasses.asdict(s) for s in splits]
  if splits:
    params = run(
      "split",
      params,
      masks.new_unit_mask(params, timestamps, layers, task, head),
    )
  return params, timestamps, record


class DEN(method.Sequential):
  """DEN as a continual method: `learn_task` on the `config.den` settings."""

  def __init__(self, config, input_shape):
    super().__init__(config, input_shape)
    self.den = DENConfig(**config.den)

  def learn_task(self, context, params, state, task, rng):
    params, timestamps, record = learn_task(
      context, params, state["timestamps"], task.index, self.den, rng
    )
    return params, {**state, "timestamps": timestamps}, record
