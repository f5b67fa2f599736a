"""Penalties that protect old tasks, as `mcl.trainer.train.Term`s.

Each returns a `mcl.trainer.train.Term`: a static function (names and shapes
only) and its array arguments (anchors, Fishers, coefficients), called as
`penalty(params, batch, logits) -> scalar` inside the jitted step. A new
task's anchors or coefficients are new arguments, not new constants, so
they reuse the compiled step and the jit cache holds none of them.
"""

import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mcl.trainer import train

Params = dict


def _shared(params: Params, anchor: Params) -> list[str]:
  """Parameter groups present in both trees with equal shapes."""
  return [
    name
    for name in anchor
    if name in params
    and all(params[name][k].shape == v.shape for k, v in anchor[name].items())
  ]


@dataclasses.dataclass(frozen=True)
class _L2Pull:
  pairs: tuple[tuple[str, str], ...]  # (group, leaf) pulled

  def __call__(self, params, batch, logits, args):
    del batch, logits
    return args["strength"] * sum(
      jnp.sum(jnp.square(params[n][k] - args["anchor"][n][k]))
      for n, k in self.pairs
    )


def l2_pull(
  anchor: Params,
  strength: float,
  names: Sequence[str] | None = None,
  keys: tuple[str, ...] = ("kernel",),
) -> train.Term:
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
  pairs = tuple((n, k) for n in names for k in keys)
  return train.Term(
    _L2Pull(pairs),
    {
      "anchor": {
        n: {k: jnp.asarray(anchor[n][k]) for k in keys} for n in names
      },
      "strength": jnp.float32(strength),
    },
  )


@functools.partial(jax.jit, static_argnums=(0, 1))
def _batch_fisher(model, task, params, x_BxTxF):
  """Sum over the batch of sum_y p(y|x) (d log p(y|x) / d theta)^2."""

  def log_probs(p, x):
    return jax.nn.log_softmax(model.apply({"params": p}, x[None])[task][0])

  jac = jax.vmap(jax.jacrev(log_probs), in_axes=(None, 0))(params, x_BxTxF)
  prob = jax.nn.softmax(model.apply({"params": params}, x_BxTxF)[task], axis=-1)

  def weigh(g):  # g: [B, classes, ...]
    w = prob.reshape(prob.shape + (1,) * (g.ndim - 2))
    return jnp.sum(w * jnp.square(g), axis=(0, 1))

  return jax.tree.map(weigh, jac)


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
    batches: training batches {"inputs": float32 [B, frames, mels], ...}.

  Returns:
    A float32 tree like `params`.
  """

  total, count = None, 0
  for batch in batches:
    f = _batch_fisher(model, task, params, jnp.asarray(batch["inputs"]))
    total = f if total is None else jax.tree.map(jnp.add, total, f)
    count += batch["inputs"].shape[0]
  return jax.tree.map(lambda v: np.asarray(v / count), total)


@dataclasses.dataclass(frozen=True)
class _EWC:
  def __call__(self, params, batch, logits, args):
    del batch, logits
    total = jnp.zeros([])
    for anchor, fisher in args["terms"]:
      for n in _shared(params, anchor):
        for k in anchor[n]:
          total += jnp.sum(
            fisher[n][k] * jnp.square(params[n][k] - anchor[n][k])
          )
    return 0.5 * args["strength"] * total


def ewc_penalty(
  anchors: Mapping[int, Params],
  fishers: Mapping[int, Params],
  strength: float,
) -> train.Term:
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
  terms = tuple(
    (
      jax.tree.map(jnp.asarray, anchors[j]),
      {n: jax.tree.map(jnp.asarray, fishers[j][n]) for n in anchors[j]},
    )
    for j in sorted(anchors)
  )
  return train.Term(_EWC(), {"terms": terms, "strength": jnp.float32(strength)})


@dataclasses.dataclass(frozen=True)
class _Distillation:
  old_model: nn.Module
  old_heads: int

  def __call__(self, params, batch, logits, args):
    del params
    old = self.old_model.apply({"params": args["params"]}, batch["inputs"])
    total = jnp.zeros([])
    for j in range(self.old_heads):
      target = jax.nn.softmax(
        jax.lax.stop_gradient(old[j]) / args["temperature"]
      )
      log_p = jax.nn.log_softmax(logits[j] / args["temperature"])
      total += -jnp.mean(jnp.sum(target * log_p, axis=-1))
    return args["strength"] * total


def lwf_distillation(
  old_model: nn.Module,
  old_params: Params,
  old_heads: int,
  strength: float,
  temperature: float,
) -> train.Term:
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
  return train.Term(
    _Distillation(old_model, old_heads),
    {
      "params": jax.tree.map(jnp.asarray, old_params),
      "strength": jnp.float32(strength),
      "temperature": jnp.float32(temperature),
    },
  )
