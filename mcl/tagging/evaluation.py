"""Clip-level evaluation of an auto-tagging model.

A clip is scored from K chunks (evenly spaced excerpts): its probability of
tag n is the mean of the chunks' sigmoids, p_n = (1/K) sum_k s(z_kn), as in
Won et al., "Evaluation of CNN-based automatic music tagging models" (SMC
2020), solver.py `get_validation_score` (which averages the model's sigmoid
outputs). The loss is the binary cross-entropy of these clip probabilities;
the scores are macro ROC-AUC and PR-AUC over tags (`mcl.metrics`).
"""

import dataclasses
import functools
import math
from collections.abc import Iterable, Mapping

import flax.linen as nn
import jax
import numpy as np

from mcl import metrics

Variables = dict


@dataclasses.dataclass(frozen=True)
class TagEvaluation:
  """Clip-level evaluation.

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


@functools.partial(jax.jit, static_argnames="model")
def clip_log_probabilities(
  model: nn.Module, variables: Variables, inputs: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """log p and log(1 - p) of the clip probabilities p (mean chunk sigmoid).

  Both come from log-sigmoids through a log-sum-exp over chunks,
  log p = logsumexp_k log s(z_k) - log K and log(1 - p) = logsumexp_k
  log s(-z_k) - log K, so they stay finite when a sigmoid saturates.

  Args:
    model: `apply(variables, x, train=False)` -> logits [B * K, n_tags].
    variables: {"params"[, "batch_stats"]}.
    inputs: float32 [B, K, ...], K chunks per clip.

  Returns:
    Two float32 [B, n_tags] arrays: log p and log(1 - p).
  """
  clips, chunks = inputs.shape[:2]
  logits = model.apply(
    variables, inputs.reshape((clips * chunks,) + inputs.shape[2:]), train=False
  ).reshape(clips, chunks, -1)
  log_k = math.log(chunks)
  log_p = jax.nn.logsumexp(jax.nn.log_sigmoid(logits), axis=1) - log_k
  log_not_p = jax.nn.logsumexp(jax.nn.log_sigmoid(-logits), axis=1) - log_k
  return log_p, log_not_p


def evaluate(
  model: nn.Module,
  variables: Variables,
  batches: Iterable[Mapping[str, np.ndarray]],
) -> TagEvaluation:
  """Clip-level BCE, ROC-AUC and PR-AUC over streamed evaluation batches.

  Args:
    model: the network; `apply(variables, x, train=False)` -> logits.
    variables: {"params"[, "batch_stats"]}.
    batches: {"inputs": float32 [B, K, ...], "tags": [B, n_tags] multi-hot,
      "mask": float32 [B] (0: padding clip, left out; all kept when
      absent)}; read once, batch by batch.

  Returns:
    The evaluation of the kept clips.

  Raises:
    ValueError: no clip is kept.
  """
  log_p, log_not_p, tags = [], [], []
  for batch in batches:
    inputs = np.asarray(batch["inputs"], np.float32)
    keep = np.asarray(batch.get("mask", np.ones(inputs.shape[0]))) > 0
    lp, lq = jax.device_get(clip_log_probabilities(model, variables, inputs))
    log_p.append(np.asarray(lp, np.float64)[keep])
    log_not_p.append(np.asarray(lq, np.float64)[keep])
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
