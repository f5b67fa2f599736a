"""The one training step of every experiment, continual and tagging.

A step updates a `TrainState` (parameters, BatchNorm statistics, optimizer
state) on one batch under a `Phase`: the loss, the learning rate, a
`trainable` mask, a `penalty` added to the loss and a `proximal` map
applied after the update. Everything a phase may change between phases is
an array argument (the learning rate, the mask, a penalty's anchors and
coefficient, a proximal map's strengths), carried by `Term`s whose
function is static and holds no array; so a new phase with new values
reuses the compiled step, and the jit cache keeps no old anchors alive.
The step recompiles only when shapes change (a grown network, a new head)
or when the loss or a term's function changes.

- Mask: gradients and updates are multiplied by `trainable` (0./1. arrays,
  so `optax.masked` with its static boolean leaves does not fit); frozen
  entries stay bit-identical.
- Optimizer: the state's `tx` gives the update's direction (Adam's
  m / (sqrt(v) + eps), or Nesterov momentum) and the step scales it by
  -learning_rate. `tx` is built once per kind
  (`mcl.trainer.optimizer.direction`), so phases with other rates share one
  compiled step.
- Proximal: receives Adam's diagonal metric
  (`mcl.trainer.optimizer.AdamMetric`), so DEN's thresholds are taken in the
  optimizer's per-coordinate steps.
- Losses: `TaskCrossEntropy` (a head per task, each example on its own
  task's head: replay and joint training mix tasks) and
  `TagBinaryCrossEntropy` (multi-label tagging, Won et al. 2020).
- Devices: the step is one `jax.jit`; with the batch a global array sharded
  on a `("data",)` mesh and the state replicated (`mcl.trainer.parallel`), XLA
  partitions it and all-reduces the gradients.
"""

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from mcl.trainer import optimizer

Params = dict
Batch = dict[str, jax.Array]


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite.

  Attributes:
    step: the step at which it was seen.
    params: the parameters at that step, for saving and inspection.
  """

  def __init__(self, step: int, params: Params):
    super().__init__(f"non-finite training loss at step {step}")
    self.step = step
    self.params = params


@flax.struct.dataclass
class TrainState:
  """What the jitted step updates.

  Attributes:
    step: int32 scalar, optimizer steps so far (over all phases or stages
      the caller counts); dropout keys are `fold_in(rng, step)`.
    params: the model's "params" collection.
    batch_stats: its "batch_stats" collection ({} without BatchNorm).
    opt_state: the optimizer state of `tx`.
    model: the network (static): `apply(variables, x, train=True,
      mutable=["batch_stats"], rngs={"dropout": key})`.
    tx: the update direction (static), from `mcl.trainer.optimizer.direction`.
  """

  step: jax.Array
  params: Params
  batch_stats: Params
  opt_state: optax.OptState
  model: nn.Module = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  @classmethod
  def create(
    cls,
    model: nn.Module,
    variables: dict,
    tx: optax.GradientTransformation,
    step: int = 0,
  ) -> "TrainState":
    """A fresh state on device copies of `variables`.

    The step donates its state, so the state must not alias the caller's
    arrays: every leaf is copied.
    """
    params = jax.tree.map(jnp.array, variables["params"])
    return cls(
      step=jnp.asarray(step, jnp.int32),
      params=params,
      batch_stats=jax.tree.map(jnp.array, variables.get("batch_stats", {})),
      opt_state=tx.init(params),
      model=model,
      tx=tx,
    )

  @property
  def variables(self) -> dict:
    return variables_of(self.params, self.batch_stats)


def variables_of(params: Params, batch_stats: Params) -> dict:
  """The `model.apply` variables; no "batch_stats" entry when it is empty."""
  if batch_stats:
    return {"params": params, "batch_stats": batch_stats}
  return {"params": params}


@flax.struct.dataclass
class Term:
  """A penalty or proximal map: a static function and its array arguments.

  `fn` must be hashable and hold no arrays (a module-level function or a
  frozen dataclass of names and shapes); `args` is a pytree of arrays
  (anchors, coefficients, unit masks). Calling the term calls
  `fn(*inputs, args)`:

  - penalty: `term(params, batch, outputs) -> scalar` added to the loss;
  - proximal: `term(params, trainable, metric) -> params` after the update.
  """

  fn: Callable = flax.struct.field(pytree_node=False)
  args: Any = None

  def __call__(self, *inputs):
    return self.fn(*inputs, self.args)


def chain(*terms: Term) -> Term:
  """Proximal terms applied in order (`params` threads through them)."""
  return Term(_Chain(tuple(t.fn for t in terms)), tuple(t.args for t in terms))


@dataclasses.dataclass(frozen=True)
class _Chain:
  fns: tuple[Callable, ...]

  def __call__(self, params, trainable, metric, args):
    for fn, a in zip(self.fns, args, strict=True):
      params = fn(params, trainable, metric, a)
    return params


def multi_task_cross_entropy(
  logits: Sequence[jax.Array],
  labels: jax.Array,
  task_ids: jax.Array,
  heads: Sequence[int],
) -> jax.Array:
  """Mean cross-entropy, each example on its own task's head.

  Args:
    logits: one float [B, classes_t] array per head.
    labels: int32 [B], class index within the example's task.
    task_ids: int32 [B], the example's task; every id must be in `heads`.
    heads: the heads that may occur in `task_ids` (static).

  Returns:
    float32 scalar: sum over examples of -log p(label | head) / B.
  """
  total = jnp.zeros([])
  for t in heads:
    n = logits[t].shape[-1]
    ce = optax.softmax_cross_entropy_with_integer_labels(
      logits[t], jnp.clip(labels, 0, n - 1)
    )
    total += jnp.sum(jnp.where(task_ids == t, ce, 0.0))
  return total / labels.shape[0]


@dataclasses.dataclass(frozen=True)
class TaskCrossEntropy:
  """Loss of a multi-head classifier: `multi_task_cross_entropy`.

  Reads batch["label"] (int32 [B]) and batch["task"] (int32 [B]); `heads`
  are the task ids that occur in the batches.
  """

  heads: tuple[int, ...]

  def __call__(self, outputs, batch: Batch) -> jax.Array:
    return multi_task_cross_entropy(
      outputs, batch["label"], batch["task"], self.heads
    )


@dataclasses.dataclass(frozen=True)
class CrossEntropy:
  """Softmax cross-entropy of a one-output classifier, mean over the batch
  (batch["label"]: int32 [B]; logits [B, classes])."""

  def __call__(self, logits, batch: Batch) -> jax.Array:
    return jnp.mean(
      optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    )


@dataclasses.dataclass(frozen=True)
class TagBinaryCrossEntropy:
  """Sigmoid binary cross-entropy, mean over examples and tags.

  l = -mean[y log s(z) + (1 - y) log(1 - s(z))] on batch["tags"]
  (float32 [B, n_tags] multi-hot), as Won et al. (SMC 2020) apply
  `nn.BCELoss` to sigmoid outputs.
  """

  def __call__(self, logits, batch: Batch) -> jax.Array:
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, batch["tags"]))


@flax.struct.dataclass
class Phase:
  """How a step trains: everything but the loss is an array argument.

  Attributes:
    learning_rate: float32 scalar.
    trainable: pytree like the parameters of 0./1. entries, or None to
      train everything.
    penalty: a penalty `Term`, or None.
    proximal: a proximal `Term`, or None.
    loss: `loss(outputs, batch) -> scalar` (static).
  """

  learning_rate: jax.Array
  trainable: Params | None = None
  penalty: Term | None = None
  proximal: Term | None = None
  loss: Callable = flax.struct.field(
    pytree_node=False, default=TagBinaryCrossEntropy()
  )


@functools.partial(jax.jit, donate_argnums=0)
def train_step(
  state: TrainState, batch: Batch, phase: Phase, rng: jax.Array
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step.

  Args:
    state: the state to update (donated).
    batch: {"inputs": float32 [B, ...], and the loss's targets}.
    phase: loss, learning rate, mask, penalty and proximal map.
    rng: run key; dropout uses `fold_in(rng, state.step)`.

  Returns:
    The new state and float32 scalars {"loss" (with the penalty),
    "data_loss" (without)}.
  """
  dropout = jax.random.fold_in(rng, state.step)

  def loss_fn(params):
    outputs, updated = state.model.apply(
      variables_of(params, state.batch_stats),
      batch["inputs"],
      train=True,
      mutable=["batch_stats"],
      rngs={"dropout": dropout},
    )
    data_loss = phase.loss(outputs, batch)
    loss = data_loss
    if phase.penalty is not None:
      loss = loss + phase.penalty(params, batch, outputs)
    return loss, (data_loss, updated.get("batch_stats", {}))

  (loss, (data_loss, batch_stats)), grads = jax.value_and_grad(
    loss_fn, has_aux=True
  )(state.params)
  if phase.trainable is not None:
    grads = jax.tree.map(jnp.multiply, grads, phase.trainable)
  direction, opt_state = state.tx.update(grads, state.opt_state, state.params)
  lr = phase.learning_rate
  updates = jax.tree.map(lambda d: -lr * d, direction)
  if phase.trainable is not None:
    updates = jax.tree.map(jnp.multiply, updates, phase.trainable)
  params = optax.apply_updates(state.params, updates)
  if phase.proximal is not None:
    trainable = phase.trainable
    if trainable is None:
      trainable = jax.tree.map(jnp.ones_like, params)
    params = phase.proximal(
      params, trainable, optimizer.adam_metric(opt_state, lr)
    )
  new_state = state.replace(
    step=state.step + 1,
    params=params,
    batch_stats=batch_stats,
    opt_state=opt_state,
  )
  return new_state, {"loss": loss, "data_loss": data_loss}


# Not jitted: `mcl.trainer.replicas` maps it over a replica axis in a jit
# of its own.
step = train_step.__wrapped__
