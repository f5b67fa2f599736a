"""The class-incremental scenario's network: one head over every class.

`config.scenario = "class_incremental"`: a clip is named among all classes
seen so far, with no task id. The network is one `ConvClassifier` whose
single head `head_0` has a row (kernel column and bias) for every class of
the run's sequence, allocated at init in task order, so the classes seen
after task t are the prefix [0, C_t) (`ClassIncremental.seen_classes`).
A class's rows are exact zeros, and masked out of the training mask, until
its task arrives (`begin_task` draws them); the loss and every score read
the seen prefix only (logits of later classes are set to `MASKED_LOGIT`).
So the head grows without a new shape: the step and the scoring compile
once per phase kind for the whole run.

Batches of this scenario carry global labels (the class's row) and
"classes" (int32 [B], C_t of the example's phase) and "weight" (float32
[B], the example's share of the cross-entropy).
"""

import dataclasses
from collections.abc import Iterator, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mcl.continual import method
from mcl.models import ConvClassifier
from mcl.models.conv_classifier import encoder_name
from mcl.trainer import evaluation, fit, train

SCENARIO = "class_incremental"
HEAD = "head_0"
# The logit of a class not seen yet: exp() of it is exactly 0 in float32.
MASKED_LOGIT = -1e9


def seen_logits(logits: jax.Array, classes: jax.Array) -> jax.Array:
  """`logits` [..., C] with every class at or after `classes` (broadcast
  against the leading axes) set to `MASKED_LOGIT`."""
  seen = jnp.arange(logits.shape[-1]) < jnp.asarray(classes)[..., None]
  return jnp.where(seen, logits, MASKED_LOGIT)


@dataclasses.dataclass(frozen=True)
class SeenClassCrossEntropy:
  """sum_b weight_b * CE(softmax over the seen classes, label_b) / B.

  Reads batch["label"] (int32 [B], global), batch["classes"] (int32 [B])
  and batch["weight"] (float32 [B]).
  """

  def __call__(self, outputs, batch) -> jax.Array:
    (logits,) = outputs
    ce = optax.softmax_cross_entropy_with_integer_labels(
      seen_logits(logits, batch["classes"]), batch["label"]
    )
    return jnp.sum(batch["weight"] * ce) / batch["label"].shape[0]


@dataclasses.dataclass(frozen=True)
class _OldClassDistillation:
  old_model: nn.Module

  def __call__(self, params, batch, outputs, args):
    del params
    (old,) = self.old_model.apply({"params": args["params"]}, batch["inputs"])
    t = args["temperature"]
    target = jax.nn.softmax(
      seen_logits(jax.lax.stop_gradient(old) / t, args["classes"])
    )
    log_p = jax.nn.log_softmax(seen_logits(outputs[0] / t, args["classes"]))
    return -args["strength"] * jnp.mean(jnp.sum(target * log_p, axis=-1))


def old_class_distillation(
  model: nn.Module,
  old_params: dict,
  old_classes: int,
  strength: float,
  temperature: float,
) -> train.Term:
  """Knowledge distillation on the classes seen before the task.

  strength * mean_batch [-sum_{c < old_classes} y'_c log yhat'_c], y' =
  softmax(old logits / T) of the network before the task, on the batch,
  and yhat' = softmax(new logits / T), both over the old classes only
  (Li & Hoiem 2016, Eq. 2, on a single head; iCaRL's distillation in its
  softmax form). `old_classes` is an array argument: one compilation
  serves every task.
  """
  return train.Term(
    _OldClassDistillation(model),
    {
      "params": jax.tree.map(jnp.asarray, old_params),
      "classes": jnp.int32(old_classes),
      "strength": jnp.float32(strength),
      "temperature": jnp.float32(temperature),
    },
  )


class ClassIncremental(method.Method):
  """Base of the class-incremental methods (see the module docstring).

  The state holds "seen_classes" (int32 C_t) and what a method keeps
  (memories, anchors, statistics).

  Attributes:
    offsets: int [T + 1], the first row of each task's classes; the last
      entry is C, every class of the run.
  """

  scenario = SCENARIO

  def __init__(self, widths, input_shape, settings=None, head_sizes=()):
    if not head_sizes:
      raise ValueError(
        "a class-incremental method allocates every class of the run up "
        "front: give head_sizes (the classes of each task)"
      )
    super().__init__(widths, input_shape, settings, head_sizes)
    self.offsets = np.concatenate([[0], np.cumsum(head_sizes)]).astype(int)

  @property
  def num_classes(self) -> int:
    """C: every class of the run (the head's rows)."""
    return int(self.offsets[-1])

  def seen_classes(self, task: int) -> int:
    """C_t: the classes seen once task `task` has arrived."""
    return int(self.offsets[task + 1])

  def init(self, key, task):
    model = ConvClassifier(
      **self.widths.module_fields(), head_sizes=(self.num_classes,)
    )
    params = model.init(key, jnp.zeros(self.input_shape))["params"]
    seen = np.arange(self.num_classes) < self.seen_classes(task.index)
    params[HEAD] = {
      "kernel": jnp.where(seen, params[HEAD]["kernel"], 0.0),
      "bias": jnp.zeros(self.num_classes, jnp.float32),
    }
    params = jax.device_get({**params, **self.widths.pretrained(encoder_name)})
    return params, {"seen_classes": np.asarray(seen.sum(), np.int32)}

  def begin_task(self, params, state, task, rng):
    """Draws the rows of `task`'s classes: LeCun-normal kernel columns
    (as `surgery.add_head`), zero biases."""
    lo, hi = self.offsets[task.index], self.offsets[task.index + 1]
    kernel = np.array(params[HEAD]["kernel"], np.float32)
    fan_in = kernel.shape[0]
    kernel[:, lo:hi] = rng.standard_normal((fan_in, hi - lo)) / np.sqrt(fan_in)
    head = {"kernel": kernel, "bias": np.array(params[HEAD]["bias"])}
    seen = np.asarray(hi, np.int32)
    return {**params, HEAD: head}, {**state, "seen_classes": seen}

  def trainable(self, params, task: int) -> dict:
    """Everything but the head rows of classes not seen after `task`."""
    mask = method.ones(params)
    seen = (np.arange(self.num_classes) < self.seen_classes(task)).astype(
      np.float32
    )
    mask[HEAD] = {
      "kernel": np.broadcast_to(seen, mask[HEAD]["kernel"].shape).copy(),
      "bias": seen,
    }
    return mask

  def masked(self, params, seen: int) -> dict:
    """`params` with the biases of classes >= `seen` at `MASKED_LOGIT`."""
    head = params[HEAD]
    bias = jnp.where(
      jnp.arange(self.num_classes) < seen, head["bias"], MASKED_LOGIT
    )
    return {**params, HEAD: {**head, "bias": bias}}

  def network(self, params, state, task):
    """The whole network, classes after task `task` masked."""
    del state
    return method.Network(
      self.model(params), self.masked(params, self.seen_classes(task)), 0
    )

  def stream(
    self, batches: Iterator[dict], seen: int
  ) -> Iterator[dict[str, np.ndarray]]:
    """Task batches {"inputs", "label" (in its task), "task"} as this
    scenario's: global labels, "classes" = `seen`, "weight" = 1."""
    for batch in batches:
      size = batch["label"].shape[0]
      yield {
        "inputs": batch["inputs"],
        "label": (self.offsets[batch["task"]] + batch["label"]).astype(
          np.int32
        ),
        "classes": np.full(size, seen, np.int32),
        "weight": np.ones(size, np.float32),
      }

  def labelled(self, batches: Sequence[dict], task: int) -> list[dict]:
    """Evaluation batches of task `task` with global labels."""
    return [{**b, "label": b["label"] + self.offsets[task]} for b in batches]

  def evaluator(self, model: nn.Module, batches: Sequence[dict], seen: int):
    """variables -> `fit.Evaluation` of `batches` (global labels) among
    the `seen` classes."""

    def evaluate(variables):
      r = evaluation.evaluate_labels(
        model, {"params": self.masked(variables["params"], seen)}, batches, 0
      )
      return fit.Evaluation(r.loss, {"accuracy": r.accuracy})

    return evaluate

  def train_phase(
    self,
    context,
    params,
    task,
    name: str,
    batches: Iterator[dict],
    *,
    validation_tasks: Sequence[int] | None = None,
    **kwargs,
  ) -> fit.FitResult:
    """One phase of `task` on `batches` (this scenario's layout), every
    seen class's rows trained, early-stopped on the validation clips of
    `validation_tasks` (default: the task's own) among the seen classes.
    `kwargs`: the context's penalty and fit_config."""
    seen = self.seen_classes(task.index)
    validation = [
      b
      for t in (validation_tasks or (task.index,))
      for b in self.labelled(context.validation(t), t)
    ]
    return context.phase(
      params,
      self.trainable(params, task.index),
      name,
      batches=batches,
      heads=(0,),
      loss=SeenClassCrossEntropy(),
      evaluate=self.evaluator(self.model(params), validation, seen),
      **kwargs,
    )

  def distillation(self, params, task) -> train.Term:
    """`old_class_distillation` from `params` of the classes before
    `task`, at the settings' `strength` and `temperature` (LwF, iCaRL)."""
    return old_class_distillation(
      self.model(params),
      params,
      self.seen_classes(task.index - 1),
      self.settings.strength,
      self.settings.temperature,
    )

  def class_probabilities(self, params, state, seen: int, inputs) -> np.ndarray:
    """Clip probabilities among the `seen` classes, task id withheld.

    Args:
      params, state: the method's.
      seen: C_t.
      inputs: float32 [clips, K, ...], numpy or from `evaluation.to_device`.

    Returns:
      float64 [clips, seen]: the chunk softmaxes averaged.
    """
    del state
    log_p, _ = evaluation.clip_log_probabilities(
      self.model(params), {"params": self.masked(params, seen)}, inputs, 0
    )
    return np.exp(log_p)[:, :seen]
