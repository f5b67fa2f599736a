"""Jitted training and evaluation steps and the early-stopped fit loop.

A training batch may mix tasks (replay, joint training): every example
carries its task id, and its cross-entropy is taken on that task's head. A
training phase updates only the parameters whose entry in a `trainable`
mask is 1: gradients and optimizer updates are multiplied by the mask inside
the step (masks are arrays, so `optax.masked` with its static boolean leaves
does not fit), so frozen entries stay bit-identical. A continual-learning
method shapes a phase through two functions: a differentiable `penalty`
added to the loss (e.g. L2 towards old weights, EWC, LwF's distillation on
the batch) and a `proximal` map applied after each optimizer step (e.g.
DEN's L1 and group-lasso soft-thresholds). The proximal map receives
Adam's diagonal metric (`mcl.optimizer.AdamMetric`), so that its
thresholds are taken in the optimizer's own per-coordinate step sizes.
The optimizer state is built fresh for every phase.
"""

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from clu import metric_writers, periodic_actions
from flax.training import train_state

from mcl import metrics, optimizer

Params = dict
Batch = dict[str, jax.Array]
# penalty(params, batch, logits of every head) -> scalar.
Penalty = Callable[[Params, Batch, tuple[jax.Array, ...]], jax.Array]
# proximal(params, trainable mask, Adam's metric) -> params.
Proximal = Callable[[Params, Params, optimizer.AdamMetric], Params]


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite.

  Attributes:
    step: the phase step at which it was seen.
    params: the parameters at that step, for saving and inspection.
  """

  def __init__(self, step: int, params: Params):
    super().__init__(f"non-finite training loss at step {step}")
    self.step = step
    self.params = params


@dataclasses.dataclass(frozen=True)
class FitConfig:
  """Budget and schedule of one training phase.

  Attributes:
    learning_rate: Adam step size.
    max_steps: upper bound on optimizer steps.
    eval_every: steps between validation passes (and loss checks).
    patience: validation passes without improvement before stopping.
  """

  learning_rate: float
  max_steps: int
  eval_every: int
  patience: int


@dataclasses.dataclass(frozen=True)
class FitResult:
  """Outcome of a phase: the best parameters by validation loss.

  Attributes:
    params: the parameters of the best validation pass.
    steps: optimizer steps taken.
    validation_loss: clip-level validation loss of `params` (nats).
    validation_accuracy: their clip-level validation accuracy.
    initial_validation_loss: the validation loss before the first step;
      `validation_loss` equals it when no pass improved on it.
  """

  params: Params
  steps: int
  validation_loss: float
  validation_accuracy: float
  initial_validation_loss: float


@dataclasses.dataclass(frozen=True)
class EvalResult:
  """Clip-level evaluation of one task.

  Attributes:
    loss: mean cross-entropy of the clip probabilities.
    accuracy: share of clips whose most probable class is right.
    probabilities: float [clips, classes], chunk softmaxes averaged per clip.
    labels: int [clips].
  """

  loss: float
  accuracy: float
  probabilities: np.ndarray
  labels: np.ndarray


def _zero_penalty(params: Params, batch: Batch, logits) -> jax.Array:
  del params, batch, logits
  return jnp.zeros([])


def _no_proximal(params: Params, trainable: Params, metric) -> Params:
  del trainable, metric
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


@functools.partial(
  jax.jit,
  static_argnames=("heads", "penalty", "proximal"),
  donate_argnums=0,
)
def train_step(
  state: train_state.TrainState,
  batch: Batch,
  trainable: Params,
  learning_rate: jax.Array,
  *,
  heads: tuple[int, ...],
  penalty: Penalty,
  proximal: Proximal,
) -> tuple[train_state.TrainState, dict[str, jax.Array]]:
  """One masked optimizer step.

  Args:
    state: parameters and optimizer state.
    batch: {"log_mel": float32 [B, frames, mels], "label": int32 [B],
      "task": int32 [B]}.
    trainable: pytree like `state.params` of 0./1. entries.
    learning_rate: float32 scalar, the learning rate of `state.tx` (an
      `optimizer.adam`), for the metric of `proximal`.
    heads: the task ids that occur in the batch.
    penalty: regulariser added to the mean cross-entropy.
    proximal: map applied to the parameters after the update, given the
      mask and Adam's metric (`optimizer.AdamMetric`).

  Returns:
    The new state and {"loss", "cross_entropy"} scalars.
  """

  def loss_fn(params):
    logits = state.apply_fn({"params": params}, batch["log_mel"])
    ce = multi_task_cross_entropy(logits, batch["label"], batch["task"], heads)
    return ce + penalty(params, batch, logits), ce

  (loss, ce), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  grads = jax.tree.map(jnp.multiply, grads, trainable)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  updates = jax.tree.map(jnp.multiply, updates, trainable)
  params = proximal(
    optax.apply_updates(state.params, updates),
    trainable,
    optimizer.adam_metric(opt_state, learning_rate),
  )
  new_state = state.replace(
    step=state.step + 1, params=params, opt_state=opt_state
  )
  return new_state, {"loss": loss, "cross_entropy": ce}


@functools.partial(jax.jit, static_argnames=("model", "task"))
def chunk_logits(
  model: nn.Module, params: Params, log_mel: jax.Array, task: int
) -> jax.Array:
  """Logits of head `task` for every chunk of a batch of clips.

  Args:
    model: the network (its widths must match `params`).
    params: its parameters.
    log_mel: float32 [clips, chunks, frames, mels].
    task: head to read.

  Returns:
    float32 [clips, chunks, classes].
  """
  clips, chunks = log_mel.shape[:2]
  logits = model.apply(
    {"params": params}, log_mel.reshape((clips * chunks,) + log_mel.shape[2:])
  )[task]
  return logits.reshape(clips, chunks, -1)


def clip_probabilities(chunk_logits_CxKxN: np.ndarray) -> np.ndarray:
  """Chunk softmaxes averaged per clip: [clips, chunks, n] -> [clips, n]."""
  z = chunk_logits_CxKxN - chunk_logits_CxKxN.max(axis=-1, keepdims=True)
  p = np.exp(z)
  return (p / p.sum(axis=-1, keepdims=True)).mean(axis=1)


def evaluate(
  model: nn.Module,
  params: Params,
  task: int,
  batches: Sequence[dict[str, np.ndarray]],
) -> EvalResult:
  """Clip-level loss and accuracy of head `task` over evaluation batches.

  Args:
    model: the network.
    params: its parameters.
    task: head to read.
    batches: from `mcl.input_pipeline.eval_batches`.

  Returns:
    The evaluation; padded clips (mask 0) are left out.
  """
  probabilities, labels = [], []
  for batch in batches:
    keep = batch["mask"] > 0
    logits = chunk_logits(model, params, batch["log_mel"], task)
    p = clip_probabilities(np.asarray(logits, np.float64))
    probabilities.append(p[keep])
    labels.append(batch["label"][keep])
  probabilities = np.concatenate(probabilities)
  labels = np.concatenate(labels)
  picked = probabilities[np.arange(labels.size), labels]
  return EvalResult(
    loss=float(-np.mean(np.log(np.maximum(picked, 1e-12)))),
    accuracy=metrics.accuracy(probabilities, labels),
    probabilities=probabilities,
    labels=labels,
  )


def evaluate_tasks(
  model: nn.Module,
  params: Params,
  validation: Mapping[int, Sequence[dict[str, np.ndarray]]],
) -> tuple[float, float]:
  """Mean clip-level loss and accuracy over several heads' evaluation sets."""
  results = [evaluate(model, params, t, b) for t, b in validation.items()]
  return (
    float(np.mean([r.loss for r in results])),
    float(np.mean([r.accuracy for r in results])),
  )


def fit(
  model: nn.Module,
  params: Params,
  trainable: Params,
  heads: tuple[int, ...],
  train_iter: Iterator[dict[str, np.ndarray]],
  validation: Mapping[int, Sequence[dict[str, np.ndarray]]],
  config: FitConfig,
  *,
  penalty: Penalty = _zero_penalty,
  proximal: Proximal = _no_proximal,
  writer: metric_writers.MetricWriter | None = None,
  step_offset: int = 0,
  name: str = "fit",
) -> FitResult:
  """Trains with early stopping on the validation loss.

  Every `config.eval_every` steps the loss is checked and the clip-level
  validation loss computed (averaged over the heads of `validation`);
  training stops after `config.patience` passes without improvement or
  `config.max_steps` steps, returning the parameters of the best pass (the
  initial parameters count as pass 0).

  Args:
    model: the network, with widths matching `params`.
    params: starting parameters.
    trainable: 0./1. mask pytree like `params`.
    heads: task ids that occur in the training batches.
    train_iter: training batches with "log_mel", "label" and "task".
    validation: {head: evaluation batches of its validation clips}.
    config: the phase's budget.
    penalty: regulariser added to the loss.
    proximal: map applied after every optimizer step.
    writer: metric writer for TensorBoard scalars, or None.
    step_offset: added to the step for the writer's x axis.
    name: prefix of the scalars and log lines.

  Returns:
    The best parameters and their validation figures.

  Raises:
    NonFiniteLossError: the training loss became NaN or infinite.
  """
  # The step donates the state, so it must not alias the caller's arrays.
  state = train_state.TrainState.create(
    apply_fn=model.apply,
    params=jax.tree.map(jnp.array, params),
    tx=optimizer.adam(config.learning_rate),
  )
  trainable = jax.tree.map(jnp.asarray, trainable)
  learning_rate = jnp.float32(config.learning_rate)
  best_loss, best_accuracy = evaluate_tasks(model, params, validation)
  initial_loss = best_loss
  best_params, best_step, waited = params, 0, 0
  # Steps/s and ETA in the log (not the writer: its x axis is global);
  # phases last seconds, so report often.
  report = periodic_actions.ReportProgress(
    num_train_steps=config.max_steps, every_secs=10.0
  )
  step = 0
  while step < config.max_steps and waited < config.patience:
    state, step_metrics = train_step(
      state,
      next(train_iter),
      trainable,
      learning_rate,
      heads=heads,
      penalty=penalty,
      proximal=proximal,
    )
    step += 1
    report(step)
    if step % config.eval_every and step != config.max_steps:
      continue
    loss = float(step_metrics["loss"])
    if not np.isfinite(loss):
      raise NonFiniteLossError(step, jax.device_get(state.params))
    val_loss, val_accuracy = evaluate_tasks(model, state.params, validation)
    if writer is not None:
      writer.write_scalars(
        step_offset + step,
        {
          f"{name}/train_loss": loss,
          f"{name}/validation_loss": val_loss,
          f"{name}/validation_accuracy": val_accuracy,
        },
      )
    if val_loss < best_loss:
      # Copy: the next step donates the state's buffers.
      best_params = jax.tree.map(jnp.copy, state.params)
      best_loss, best_accuracy, best_step, waited = (
        val_loss, val_accuracy, step, 0,
      )  # fmt: skip
    else:
      waited += 1
  logging.info(
    "%s: %d steps, best at step %d: validation loss %.4f, accuracy %.3f",
    name,
    step,
    best_step,
    best_loss,
    best_accuracy,
  )
  return FitResult(
    params=jax.device_get(best_params),
    steps=step,
    validation_loss=best_loss,
    validation_accuracy=best_accuracy,
    initial_validation_loss=initial_loss,
  )
