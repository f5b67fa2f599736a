"""Clip-level evaluation of single-label and multi-label heads.

A clip is scored from K chunks (evenly spaced excerpts): its class
probabilities are the mean of the chunks' softmaxes (single-label: genres,
a continual task's head) or of their sigmoids (multi-label: tags), as in
Won et al., "Evaluation of CNN-based automatic music tagging models" (SMC
2020), whose `get_validation_score` averages the model's outputs. The loss
is the cross-entropy of those clip probabilities (categorical or binary);
the scores are accuracy, or macro ROC-AUC and PR-AUC over tags
(`mcl.trainer.metrics`).

The forward pass is one jitted function per model and head; the clips of a
batch are padded to a multiple of the devices and sharded on the
`("data",)` mesh (`mcl.trainer.parallel`), its outputs replicated back. Log
probabilities come from log-softmaxes / log-sigmoids through a
log-sum-exp over chunks, so they stay finite when an output saturates.
"""

import dataclasses
import functools
import math
from collections.abc import Iterable, Mapping

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from mcl.trainer import metrics, parallel

Variables = dict


@dataclasses.dataclass(frozen=True)
class LabelEvaluation:
  """Clip-level evaluation of one single-label head.

  Attributes:
    loss: mean over clips of -log p(label) (nats).
    accuracy: share of clips whose most probable class is right.
    probabilities: float64 [clips, classes], chunk softmaxes averaged.
    labels: int [clips].
  """

  loss: float
  accuracy: float
  probabilities: np.ndarray
  labels: np.ndarray


@dataclasses.dataclass(frozen=True)
class TagEvaluation:
  """Clip-level evaluation of a multi-label head.

  Attributes:
    loss: mean over clips and tags of -[y log p + (1 - y) log(1 - p)].
    roc_auc: macro ROC-AUC over tags with both classes, or None.
    pr_auc: macro PR-AUC (average precision) over those tags, or None.
    probabilities: float64 [clips, n_tags], chunk sigmoids averaged.
    tags: float32 [clips, n_tags], multi-hot.
  """

  loss: float
  roc_auc: float | None
  pr_auc: float | None
  probabilities: np.ndarray
  tags: np.ndarray


def _forward(model, variables, inputs):
  """Chunk logits [clips, K, n] of every output (a tuple of them for a
  model with a head per task)."""
  clips, chunks = inputs.shape[:2]
  outputs = model.apply(
    variables, inputs.reshape((clips * chunks,) + inputs.shape[2:]), train=False
  )
  return jax.tree.map(lambda x: x.reshape(clips, chunks, -1), outputs)


# Every head is computed and the one read is picked on the host, so one
# compilation serves every head of a model (heads are a few dense units).
@functools.partial(jax.jit, static_argnames=("model", "multi_label"))
def _clip_log_probabilities(model, variables, inputs, multi_label):
  log_k = math.log(inputs.shape[1])

  def clip(logits):
    if multi_label:
      log_p = jax.nn.logsumexp(jax.nn.log_sigmoid(logits), axis=1) - log_k
      log_q = jax.nn.logsumexp(jax.nn.log_sigmoid(-logits), axis=1) - log_k
      return log_p, log_q
    log_p = jax.nn.logsumexp(jax.nn.log_softmax(logits), axis=1) - log_k
    return log_p, log_p

  logits = _forward(model, variables, inputs)
  if isinstance(logits, tuple):
    return tuple(clip(x) for x in logits)
  return clip(logits)


def to_device(
  batches: Iterable[Mapping[str, np.ndarray]],
) -> list[dict]:
  """Evaluation batches kept on the devices, for sets read every pass.

  Each batch's clips are padded to a multiple of the devices (padding has
  mask 0) and its "inputs" become a global array sharded over the
  `("data",)` mesh; the other entries stay numpy. Every process must hold
  the same batches.

  Args:
    batches: {"inputs": float32 [B, K, ...], "mask": [B], and labels}.

  Returns:
    The batches, ready for `evaluate_labels` / `evaluate_tags`.
  """
  mesh = parallel.data_mesh()
  sharding = NamedSharding(mesh, PartitionSpec(parallel.DATA))
  out = []
  for batch in batches:
    size = len(batch["inputs"])
    batch = {"mask": np.ones(size, np.float32), **batch}
    pad = -size % mesh.size
    padded = {
      k: np.concatenate(
        [np.asarray(v), np.zeros((pad,) + v.shape[1:], v.dtype)]
      )
      for k, v in batch.items()
    }
    inputs = np.asarray(padded["inputs"], np.float32)
    padded["inputs"] = jax.make_array_from_callback(
      inputs.shape, sharding, lambda index, inputs=inputs: inputs[index]
    )
    out.append(padded)
  return out


def clip_log_probabilities(
  model: nn.Module,
  variables: Variables,
  inputs: np.ndarray | jax.Array,
  head: int | None = None,
  multi_label: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
  """Log clip probabilities of a batch of clips, on every device.

  Args:
    model: `apply(variables, x, train=False)` -> logits [B, n] (one head)
      or a tuple of them (a head per task).
    variables: {"params"[, "batch_stats"]}, replicated on the mesh (or
      host arrays on one device).
    inputs: float32 [clips, K, ...], K chunks per clip: numpy, or a global
      array from `to_device`.
    head: the output to read when the model has several, else None.
    multi_label: sigmoids (tags) instead of a softmax.

  Returns:
    float32 [clips, n] arrays (log p, log(1 - p)) for multi-label; for
    single-label both are log p.
  """
  clips = inputs.shape[0]
  if not isinstance(inputs, jax.Array):
    (batch,) = to_device([{"inputs": inputs}])
    inputs = batch["inputs"]
  out = _clip_log_probabilities(model, variables, inputs, multi_label)
  if head is not None:
    out = out[head]
  out = _gather(out, NamedSharding(parallel.data_mesh(), PartitionSpec()))
  return tuple(np.asarray(o, np.float64)[:clips] for o in out)


@functools.partial(jax.jit, static_argnums=1)
def _gather(tree, replicated):
  """`tree` replicated on every device (an all-gather across processes)."""
  return jax.tree.map(
    lambda x: jax.lax.with_sharding_constraint(x, replicated), tree
  )


def _kept(batch: Mapping[str, np.ndarray]) -> np.ndarray:
  size = batch["inputs"].shape[0]
  return np.asarray(batch.get("mask", np.ones(size)))[:size] > 0


def evaluate_labels(
  model: nn.Module,
  variables: Variables,
  batches: Iterable[Mapping[str, np.ndarray]],
  head: int | None = None,
) -> LabelEvaluation:
  """Clip-level cross-entropy and accuracy of a single-label head.

  Args:
    model: the network; `apply(variables, x, train=False)`.
    variables: {"params"[, "batch_stats"]}.
    batches: {"inputs": float32 [B, K, ...], "label": int [B], "mask":
      float32 [B] (0: padding clip, left out)}.
    head: the output to read, or None for a one-output model.

  Returns:
    The evaluation of the kept clips.

  Raises:
    ValueError: no clip is kept.
  """
  log_p, labels = [], []
  variables = parallel.replicate(variables, parallel.data_mesh())
  for batch in batches:
    keep = _kept(batch)
    lp, _ = clip_log_probabilities(model, variables, batch["inputs"], head)
    log_p.append(lp[keep])
    labels.append(np.asarray(batch["label"])[keep])
  if not sum(len(x) for x in labels):
    raise ValueError("no unmasked clip in the evaluation batches")
  log_p, labels = np.concatenate(log_p), np.concatenate(labels)
  probabilities = np.exp(log_p)
  return LabelEvaluation(
    loss=float(-np.mean(log_p[np.arange(labels.size), labels])),
    accuracy=metrics.accuracy(probabilities, labels),
    probabilities=probabilities,
    labels=labels,
  )


def evaluate_tags(
  model: nn.Module,
  variables: Variables,
  batches: Iterable[Mapping[str, np.ndarray]],
) -> TagEvaluation:
  """Clip-level BCE, ROC-AUC and PR-AUC of a multi-label model.

  Args:
    model: the network; `apply(variables, x, train=False)` -> logits.
    variables: {"params"[, "batch_stats"]}.
    batches: {"inputs": float32 [B, K, ...], "tags": [B, n_tags]
      multi-hot, "mask": float32 [B] (0: padding clip, left out; all kept
      when absent)}; read once, batch by batch.

  Returns:
    The evaluation of the kept clips.

  Raises:
    ValueError: no clip is kept.
  """
  log_p, log_not_p, tags = [], [], []
  variables = parallel.replicate(variables, parallel.data_mesh())
  for batch in batches:
    keep = _kept(batch)
    lp, lq = clip_log_probabilities(
      model, variables, batch["inputs"], multi_label=True
    )
    log_p.append(lp[keep])
    log_not_p.append(lq[keep])
    tags.append(np.asarray(batch["tags"], np.float32)[keep])
  if not tags or not sum(len(t) for t in tags):
    raise ValueError("no unmasked clip in the evaluation batches")
  log_p, log_not_p = np.concatenate(log_p), np.concatenate(log_not_p)
  tags = np.concatenate(tags)
  probabilities = np.exp(log_p)
  loss = -np.mean(tags * log_p + (1.0 - tags) * log_not_p)
  return TagEvaluation(
    loss=float(loss),
    roc_auc=metrics.tag_roc_auc(probabilities, tags),
    pr_auc=metrics.tag_pr_auc(probabilities, tags),
    probabilities=probabilities,
    tags=tags,
  )


_chunk_logits = jax.jit(_forward, static_argnames="model")


def chunk_logits(
  model: nn.Module,
  variables: Variables,
  inputs: np.ndarray | jax.Array,
  head: int,
) -> np.ndarray:
  """Logits of output `head` for every chunk (class-incremental scoring
  concatenates several heads' logits before the softmax).

  Args:
    model: the network, one output per head.
    variables: {"params"}.
    inputs: float32 [clips, K, ...], numpy or from `to_device`.
    head: the output to read.

  Returns:
    float64 [clips, K, classes] (padding clips of `to_device` included).
  """
  out = _chunk_logits(model, variables, inputs)[head]
  out = _gather(out, NamedSharding(parallel.data_mesh(), PartitionSpec()))
  return np.asarray(out, np.float64)
