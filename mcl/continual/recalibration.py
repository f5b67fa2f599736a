"""Old heads' bias recalibration after a task, without old data (`den_recal`).

On music every task reads the same input subspace, and the drift DEN
allows its shared units moves each old head's logits by an offset that is
nearly the same for every clip (issue 21: 90-100 % of the change of the
logit difference), so ROC-AUC stays while accuracy falls. The offset
measured on the *new* task's training clips, passed through an old head's
network before and after the task, matches the one on the old task's
clips. Subtracting it from the old head's bias undoes a common shift
using no old data, as semantic drift compensation (Yu et al., CVPR 2020)
estimates an old class's drift from the new task's data.

Pure between-task functions; the forward pass is one jitted apply per
network shape.
"""

from collections.abc import Sequence

import jax
import numpy as np

from mcl.models import ConvClassifier


@jax.jit
def _apply_logits(params, inputs_BxTxF):
  model = ConvClassifier.from_params(params)
  return model.apply({"params": params}, inputs_BxTxF)


def mean_logits(params: dict, head: int, clips: Sequence[dict]) -> np.ndarray:
  """Mean logits of head `head` over every chunk of every real clip.

  Args:
    params: a `ConvClassifier` tree that has head `head`.
    head: the head to read.
    clips: evaluation batches {"inputs": float32 [clips, chunks, H, W],
      "mask": float32 [clips]}.

  Returns:
    float64 [classes]: the mean over chunks and unmasked clips.
  """
  total, count = 0.0, 0.0
  for batch in clips:
    inputs = np.asarray(batch["inputs"], np.float32)
    n, k = inputs.shape[:2]
    logits = _apply_logits(params, inputs.reshape(n * k, *inputs.shape[2:]))
    per_chunk = np.asarray(logits[head], np.float64).reshape(n, k, -1)
    weight = np.asarray(batch["mask"], np.float64)[:, None, None]
    total = total + np.sum(per_chunk * weight, axis=(0, 1))
    count += float(np.sum(batch["mask"])) * k
  return total / count


def head_offset(
  before: dict, after: dict, head: int, clips: Sequence[dict]
) -> np.ndarray:
  """How far head `head`'s logits moved on `clips` from `before` to
  `after` (the head's timestamped networks): float64 [classes]."""
  return mean_logits(after, head, clips) - mean_logits(before, head, clips)


def recalibrate(params: dict, head: str, offset: np.ndarray) -> dict:
  """The tree with `offset` subtracted from `head`'s bias (new tree).

  A common logit shift c of every input is removed exactly: the head's
  logits become those before the shift. The softmax ignores the part of
  c shared by every class, so only the shift between classes matters.
  """
  new = dict(params)
  new[head] = {
    **params[head],
    "bias": (params[head]["bias"] - offset).astype(np.float32),
  }
  return new
