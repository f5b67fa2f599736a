"""Scores of a method's networks after a task: the rows of the matrices.

Task-incremental scores evaluate task j on `method.network(..., j)` with
its own head (task id given). The class-incremental score withholds the
task id: a task-incremental method's seen networks each score a clip,
their heads' chunk logits are concatenated in task order, and the clip's
prediction is the argmax of the chunk-averaged softmax over all classes
seen so far; a class-incremental method answers from its one head
(`mcl.continual.class_incremental`), and its task-level rows are scored
among all seen classes too.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

from mcl.continual import method
from mcl.continual.class_incremental import head
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


CLASS_INCREMENTAL = head.SCENARIO


def class_scorer(method_, params, state, tasks_seen: int, networks=None):
  """inputs -> float64 [clips, classes of tasks 0..tasks_seen - 1]: the
  clip probabilities among all seen classes, task id withheld.

  A class-incremental method answers from its one head
  (`class_probabilities`); a task-incremental one from its networks'
  heads concatenated (`class_incremental_probabilities`), its
  `scoring_network`s unless `networks` gives them.
  """
  if method_.scenario == CLASS_INCREMENTAL:
    seen = method_.seen_classes(tasks_seen - 1)
    return lambda x: method_.class_probabilities(params, state, seen, x)
  if networks is None:
    networks = [
      method_.scoring_network(params, state, j) for j in range(tasks_seen)
    ]
  return lambda x: class_incremental_probabilities(networks, x)


@dataclasses.dataclass(frozen=True)
class SeenClips:
  """Clips of some seen tasks scored among all seen classes.

  Attributes:
    probabilities: float64 [clips, seen classes].
    labels: int [clips], the class's position among the seen classes.
    task: int [clips], the clip's task.
  """

  probabilities: np.ndarray
  labels: np.ndarray
  task: np.ndarray

  def loss(self) -> float:
    """Mean -log p(label) (nats)."""
    p = self.probabilities[np.arange(self.labels.size), self.labels]
    return float(-np.mean(np.log(np.maximum(p, 1e-300))))

  def accuracy_row(self, seen: Sequence[tasks.Task]) -> list[float]:
    """Accuracy on each task's clips among all seen classes."""
    right = np.argmax(self.probabilities, axis=1) == self.labels
    return [float(right[self.task == t.index].mean()) for t in seen]

  def confusion(self) -> list[list[int]]:
    """[true class][predicted class] clip counts."""
    n = self.probabilities.shape[1]
    counts = np.zeros((n, n), np.int64)
    np.add.at(counts, (self.labels, np.argmax(self.probabilities, axis=1)), 1)
    return counts.tolist()


def seen_clips(
  score, seen: Sequence[tasks.Task], eval_sets, only: int | None = None
) -> SeenClips:
  """`score` (from `class_scorer`) of the clips of `seen` (tasks 0..i in
  order), or of task `only` among them, labelled among all seen classes."""
  probabilities, labels, task_of, offset = [], [], [], 0
  for task in seen:
    for batch in eval_sets[task.index] if only in (None, task.index) else ():
      keep = batch["mask"] > 0
      probabilities.append(score(batch["inputs"])[keep])
      labels.append(batch["label"][keep] + offset)
      task_of.append(np.full(int(keep.sum()), task.index))
    offset += task.num_classes
  return SeenClips(
    np.concatenate(probabilities),
    np.concatenate(labels),
    np.concatenate(task_of),
  )


def validation_loss(method_, params, state, seen, validation_sets) -> float:
  """The last of the `seen` tasks' clip-level validation loss: on its own
  head, or among all seen classes in the class-incremental scenario."""
  task = seen[-1]
  if method_.scenario != CLASS_INCREMENTAL:
    network = method_.scoring_network(params, state, task.index)
    return evaluate(network, validation_sets[task.index]).loss
  score = class_scorer(method_, params, state, len(seen))
  return seen_clips(score, seen, validation_sets, only=task.index).loss()


def _class_incremental_rows(clips: SeenClips, seen) -> TaskScores:
  """A class-incremental method's rows: each task's clips among all seen
  classes (ROC-AUC and PR-AUC: its classes one-vs-rest over every seen
  clip)."""
  aucs, offset = [], 0
  for task in seen:
    classes = range(offset, offset + task.num_classes)
    aucs.append(
      metrics.one_vs_rest_auc(clips.probabilities, clips.labels, classes)
    )
    offset += task.num_classes
  return TaskScores(
    clips.accuracy_row(seen), [a[0] for a in aucs], [a[1] for a in aucs]
  )


def after_task(
  method_,
  params,
  state,
  seen: Sequence[tasks.Task],
  test_sets: Sequence[list[dict]],
  validation_sets: Sequence[list[dict]],
) -> dict:
  """The rows of the score matrices after the last of the `seen` tasks.

  Args:
    method_: the run's method; params, state: its tree and state.
    seen: tasks 0..i.
    test_sets: every task's test batches (indexed by task).
    validation_sets: every task's validation batches.

  Returns:
    {"accuracy_row", "auroc_row", "pr_auc_row": test scores of tasks
    0..i (task id given; in the class-incremental scenario, among all
    seen classes); "validation_accuracy_row"; "class_incremental_row":
    test accuracy of each task's clips among all seen classes;
    "class_incremental_accuracy" over the union of their clips;
    "confusion_matrix": [true][predicted] over the seen classes}.
  """
  upto = len(seen)
  if method_.scenario == CLASS_INCREMENTAL:
    score = class_scorer(method_, params, state, upto)
    test_clips = seen_clips(score, seen, test_sets)
    test = _class_incremental_rows(test_clips, seen)
    validation = _class_incremental_rows(
      seen_clips(score, seen, validation_sets), seen
    )
  else:
    networks = [method_.scoring_network(params, state, j) for j in range(upto)]
    score = class_scorer(method_, params, state, upto, networks)
    test_clips = seen_clips(score, seen, test_sets)
    test = task_incremental(networks, test_sets[:upto])
    validation = task_incremental(networks, validation_sets[:upto])
  return {
    "accuracy_row": test.accuracy,
    "auroc_row": test.roc_auc,
    "pr_auc_row": test.pr_auc,
    "validation_accuracy_row": validation.accuracy,
    "class_incremental_row": test_clips.accuracy_row(seen),
    "class_incremental_accuracy": metrics.accuracy(
      test_clips.probabilities, test_clips.labels
    ),
    "confusion_matrix": test_clips.confusion(),
  }
