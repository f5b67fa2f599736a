"""Penalties that protect old tasks, in `mcl.train.Penalty` form.

Each returns `penalty(params, batch, logits) -> scalar` for the jitted
training step. Anchors are captured as constants: they change once per
task, when the step recompiles anyway.
"""

from collections.abc import Iterable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mcl import train

Params = dict


def _shared(params: Params, anchor: Params) -> list[str]:
  """Parameter groups present in both trees with equal shapes."""
  return [
    name
    for name in anchor
    if name in params
    and all(params[name][k].shape == v.shape for k, v in anchor[name].items())
  ]


def l2_pull(
  anchor: Params,
  strength: float,
  names=None,
  keys: tuple[str, ...] = ("kernel",),
) -> train.Penalty:
  """strength * sum ||W - W*||_2^2 over the `keys` leaves of `names`.

  The L2 transfer baseline pulls every shared kernel towards the previous
  task's (`names=None`: every group of `anchor`); DEN's selective
  retraining (Yoon et al. 2018, Eq. 4, trained with the Eq. 6 pull before
  the split) pulls kernels and biases of the hidden layers
  (`keys=("kernel", "bias")`), as the reference code does.

  Args:
    anchor: W*, the tree after the previous task.
    strength: the pull's coefficient.
    names: parameter groups to pull, or None for all of `anchor`'s.
    keys: leaves of each group to pull.
  """
  names = list(anchor) if names is None else list(names)
  anchors = {(n, k): jnp.asarray(anchor[n][k]) for n in names for k in keys}

  def penalty(params, batch, logits):
    del batch, logits
    return strength * sum(
      jnp.sum(jnp.square(params[n][k] - a)) for (n, k), a in anchors.items()
    )

  return penalty


def diagonal_fisher(
  model: nn.Module,
  params: Params,
  task: int,
  batches: Iterable[dict[str, np.ndarray]],
) -> Params:
  """Diagonal Fisher information of head `task`, averaged over examples.

  F_i = E_x sum_y p(y|x) (d log p(y|x) / d theta_i)^2, the expectation over
  the model's own predictive distribution (the true Fisher, as in
  Kirkpatrick et al., PNAS 2017), with x the training chunks of `batches`.

  Args:
    model: the network.
    params: the parameters after training `task`.
    task: the head whose log-likelihood is differentiated.
    batches: training batches {"log_mel": float32 [B, frames, mels], ...}.

  Returns:
    A float32 tree like `params`.
  """

  def log_probs(p, x):
    return jax.nn.log_softmax(model.apply({"params": p}, x[None])[task][0])

  @jax.jit
  def batch_fisher(p, x_BxTxF):
    jac = jax.vmap(jax.jacrev(log_probs), in_axes=(None, 0))(p, x_BxTxF)
    prob = jax.nn.softmax(
      model.apply({"params": p}, x_BxTxF)[task], axis=-1
    )  # [B, classes]

    def weigh(g):  # g: [B, classes, ...]
      w = prob.reshape(prob.shape + (1,) * (g.ndim - 2))
      return jnp.sum(w * jnp.square(g), axis=(0, 1))

    return jax.tree.map(weigh, jac)

  total, count = None, 0
  for batch in batches:
    f = batch_fisher(params, jnp.asarray(batch["log_mel"]))
    total = f if total is None else jax.tree.map(jnp.add, total, f)
    count += batch["log_mel"].shape[0]
  return jax.tree.map(lambda v: np.asarray(v / count), total)


def ewc_penalty(
  anchors: Mapping[int, Params],
  fishers: Mapping[int, Params],
  strength: float,
) -> train.Penalty:
  """(strength / 2) sum_j sum_i F_j,i (theta_i - theta*_j,i)^2.

  Elastic Weight Consolidation (Kirkpatrick et al., PNAS 2017, Eq. 3) with
  one quadratic term per earlier task j: anchor theta*_j = the parameters
  after task j, F_j its diagonal Fisher. Groups of the current tree absent
  from (or reshaped since) task j are not penalised for j.

  Args:
    anchors: {task: parameters after that task}.
    fishers: {task: `diagonal_fisher` at that task}.
    strength: lambda.
  """
  terms = [
    (
      {n: jax.tree.map(jnp.asarray, anchors[j][n]) for n in anchors[j]},
      {n: jax.tree.map(jnp.asarray, fishers[j][n]) for n in anchors[j]},
    )
    for j in sorted(anchors)
  ]

  def penalty(params, batch, logits):
    del batch, logits
    total = jnp.zeros([])
    for anchor, fisher in terms:
      for n in _shared(params, anchor):
        for k in anchor[n]:
          total += jnp.sum(
            fisher[n][k] * jnp.square(params[n][k] - anchor[n][k])
          )
    return 0.5 * strength * total

  return penalty


def lwf_distillation(
  old_model: nn.Module,
  old_params: Params,
  old_heads: int,
  strength: float,
  temperature: float,
) -> train.Penalty:
  """Learning without Forgetting's loss on the old heads (Li & Hoiem 2016).

  strength * sum_{j < old_heads} mean_batch [-sum_c y'_c log yhat'_c], with
  y' = softmax(old logits / T) recorded by the network before the task
  (run on the current batch) and yhat' = softmax(new logits / T)
  (Li & Hoiem, Eq. 2, T = 2 in the paper).

  Args:
    old_model: the network before the new task.
    old_params: its parameters (heads 0..old_heads-1).
    old_heads: number of old tasks.
    strength: lambda_o.
    temperature: T.
  """
  frozen = jax.tree.map(jnp.asarray, old_params)

  def penalty(params, batch, logits):
    del params
    old = old_model.apply({"params": frozen}, batch["log_mel"])
    total = jnp.zeros([])
    for j in range(old_heads):
      target = jax.nn.softmax(jax.lax.stop_gradient(old[j]) / temperature)
      log_p = jax.nn.log_softmax(logits[j] / temperature)
      total += -jnp.mean(jnp.sum(target * log_p, axis=-1))
    return strength * total

  return penalty
