"""Scores of a method's networks after a task: the rows of the matrices.

Task-incremental scores evaluate task j on `method.network(..., j)` with
its own head (task id given). The class-incremental score withholds the
task id: every seen task's network scores each clip, their heads' chunk
logits are concatenated in task order, and the clip's prediction is the
argmax of the chunk-averaged softmax over all classes seen so far.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

from mcl.continual import method
from mcl.datasets import tasks
from mcl.trainer import evaluation, metrics


@dataclasses.dataclass(frozen=True)
class TaskScores:
  """Clip-level scores of tasks 0..i on one evaluation split."""

  accuracy: list[float]
  roc_auc: list[float | None]
  pr_auc: list[float | None]


def evaluate(
  network: method.Network, batches: Sequence[dict]
) -> evaluation.LabelEvaluation:
  """Clip-level loss and accuracy of a task's network on its clips."""
  return evaluation.evaluate_labels(
    network.model, {"params": network.params}, batches, network.head
  )


def task_incremental(
  networks: Sequence[method.Network], eval_sets: Sequence[list[dict]]
) -> TaskScores:
  """Accuracy, ROC-AUC and PR-AUC of each task on its own network.

  Args:
    networks: task j's network at position j.
    eval_sets: task j's evaluation batches at position j.
  """
  accuracy, roc, pr = [], [], []
  for network, batches in zip(networks, eval_sets, strict=True):
    result = evaluate(network, batches)
    accuracy.append(result.accuracy)
    roc.append(metrics.roc_auc(result.probabilities, result.labels))
    pr.append(metrics.pr_auc(result.probabilities, result.labels))
  return TaskScores(accuracy, roc, pr)


def class_incremental_probabilities(
  networks: Sequence[method.Network], inputs
) -> np.ndarray:
  """Clip probabilities over all classes of `networks`, task id withheld.

  Every network's head scores each chunk; the chunk logits are
  concatenated in task order, softmaxed over all those classes and
  averaged over the clip's chunks.

  Args:
    networks: the networks of tasks 0..i, in task order.
    inputs: float32 [clips, K, frames, mels], numpy or from
      `evaluation.to_device`.

  Returns:
    float64 [clips, classes of tasks 0..i] (padding clips included).
  """
  logits = np.concatenate(
    [
      evaluation.chunk_logits(n.model, {"params": n.params}, inputs, n.head)
      for n in networks
    ],
    axis=-1,
  )
  z = logits - logits.max(axis=-1, keepdims=True)
  p = np.exp(z)
  return (p / p.sum(axis=-1, keepdims=True)).mean(axis=1)


def class_incremental_accuracy(
  networks: Sequence[method.Network], batches: list[dict]
) -> float:
  """Accuracy among all seen classes, task id withheld.

  Args:
    networks: the networks of tasks 0..i, in task order.
    batches: evaluation batches of the clips of tasks 0..i, labelled by
      position in the concatenation of the tasks' classes.

  Returns:
    Share of clips whose argmax over the concatenated heads is right.
  """
  probabilities, labels = [], []
  for batch in batches:
    keep = batch["mask"] > 0
    p = class_incremental_probabilities(networks, batch["inputs"])
    probabilities.append(p[keep])
    labels.append(batch["label"][keep])
  return metrics.accuracy(np.concatenate(probabilities), np.concatenate(labels))


def after_task(
  networks: Sequence[method.Network],
  seen: Sequence[tasks.Task],
  test_sets: Sequence[list[dict]],
  validation_sets: Sequence[list[dict]],
) -> dict:
  """The rows of the score matrices after the last of the `seen` tasks.

  Args:
    networks: the networks of tasks 0..i.
    seen: tasks 0..i.
    test_sets: every task's test batches (indexed by task).
    validation_sets: every task's validation batches.

  Returns:
    {"accuracy_row", "auroc_row", "pr_auc_row": test scores of tasks
    0..i; "validation_accuracy_row"; "class_incremental_accuracy" over
    the union of their test clips, labelled by position among all seen
    classes}.
  """
  upto = len(seen)
  test = task_incremental(networks, test_sets[:upto])
  validation = task_incremental(networks, validation_sets[:upto])
  union, offset = [], 0
  for task in seen:
    union += [
      {**b, "label": b["label"] + offset} for b in test_sets[task.index]
    ]
    offset += task.num_classes
  return {
    "accuracy_row": test.accuracy,
    "auroc_row": test.roc_auc,
    "pr_auc_row": test.pr_auc,
    "validation_accuracy_row": validation.accuracy,
    "class_incremental_accuracy": class_incremental_accuracy(networks, union),
  }
