"""Classification scores and continual-learning matrix metrics.

R[i][j] is the score on task j after training task i (T tasks); entries
with j > i are None (task not seen yet). Definitions follow Lopez-Paz &
Ranzato (NeurIPS 2017) and Chaudhry et al. (ECCV 2018), as in DESIGN.md.
"""

from collections.abc import Sequence

import numpy as np
from sklearn import metrics as sk_metrics

Matrix = Sequence[Sequence[float | None]]


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
  """Share of rows whose argmax is the label.

  Args:
    probabilities: float [clips, classes].
    labels: int [clips].
  """
  return float(np.mean(np.argmax(probabilities, axis=1) == labels))


def roc_auc(probabilities: np.ndarray, labels: np.ndarray) -> float | None:
  """ROC-AUC (scikit-learn): binary, or macro one-vs-rest for > 2 classes.

  Args:
    probabilities: float [clips, classes], rows summing to 1.
    labels: int [clips].

  Returns:
    The area, or None when a class is missing from `labels` (undefined).
  """
  num_classes = probabilities.shape[1]
  if len(np.unique(labels)) < num_classes:
    return None
  if num_classes == 2:
    return float(sk_metrics.roc_auc_score(labels, probabilities[:, 1]))
  return float(
    sk_metrics.roc_auc_score(
      labels,
      probabilities,
      multi_class="ovr",
      average="macro",
      labels=np.arange(num_classes),
    )
  )


def pr_auc(probabilities: np.ndarray, labels: np.ndarray) -> float | None:
  """PR-AUC: average precision (scikit-learn), macro over classes.

  Each class is scored one-vs-rest on its own probability column (for two
  classes, the mean of both classes' average precision).

  Args:
    probabilities: float [clips, classes].
    labels: int [clips].

  Returns:
    The area, or None when a class is missing from `labels` (undefined).
  """
  num_classes = probabilities.shape[1]
  if len(np.unique(labels)) < num_classes:
    return None
  onehot = np.eye(num_classes)[labels]
  return float(
    sk_metrics.average_precision_score(onehot, probabilities, average="macro")
  )


def one_vs_rest_auc(
  probabilities: np.ndarray, labels: np.ndarray, classes
) -> tuple[float | None, float | None]:
  """Macro one-vs-rest ROC-AUC and PR-AUC of some of the classes.

  Class c's positives are the clips labelled c, its negatives every other
  clip; the score is probabilities[:, c] (class-incremental scoring: a
  task's classes among all seen classes' clips).

  Args:
    probabilities: float [clips, classes].
    labels: int [clips].
    classes: the columns to score.

  Returns:
    (ROC-AUC, PR-AUC) means over `classes`, or (None, None) when one of
    them has no positive or no negative clip.
  """
  rocs, prs = [], []
  for c in classes:
    positive = labels == c
    if positive.all() or not positive.any():
      return None, None
    rocs.append(sk_metrics.roc_auc_score(positive, probabilities[:, c]))
    prs.append(
      sk_metrics.average_precision_score(positive, probabilities[:, c])
    )
  return float(np.mean(rocs)), float(np.mean(prs))


def _final_row(matrix: Matrix) -> np.ndarray:
  return np.asarray(matrix[-1], dtype=np.float64)


def average_accuracy(matrix: Matrix) -> float:
  """A = mean_j R[T-1][j]."""
  return float(np.mean(_final_row(matrix)))


def backward_transfer(matrix: Matrix) -> float | None:
  """BWT = mean_{j<T-1} (R[T-1][j] - R[j][j]); None for one task."""
  t = len(matrix)
  if t < 2:
    return None
  return float(np.mean([matrix[-1][j] - matrix[j][j] for j in range(t - 1)]))


def forgetting(matrix: Matrix) -> list[float]:
  """f_j = max_{i<T-1} R[i][j] - R[T-1][j] for every j < T-1."""
  t = len(matrix)
  return [
    float(max(matrix[i][j] for i in range(j, t - 1)) - matrix[-1][j])
    for j in range(t - 1)
  ]


def forward_transfer(
  zero_shot: Sequence[float | None], random_init: Sequence[float]
) -> float | None:
  """FWT = mean_{j>0} (R[j-1][j] - b_j); None for one task.

  Args:
    zero_shot: R[j-1][j], task j's score before it is trained (entry 0
      unused).
    random_init: b_j, task j's score of a random-init network.
  """
  if len(zero_shot) < 2:
    return None
  return float(
    np.mean([zero_shot[j] - random_init[j] for j in range(1, len(zero_shot))])
  )


def _scorable_tags(tags: np.ndarray) -> np.ndarray:
  """Bool [n_tags]: the tags with at least one positive and one negative."""
  positives = np.sum(tags > 0, axis=0)
  return (positives > 0) & (positives < tags.shape[0])


def tag_roc_auc(probabilities: np.ndarray, tags: np.ndarray) -> float | None:
  """Macro ROC-AUC over tags (multi-label auto-tagging).

  The area under each tag's ROC curve (scikit-learn `roc_auc_score`, one
  binary problem per column), averaged over tags with equal weight, as in
  Won et al., "Evaluation of CNN-based automatic music tagging models"
  (SMC 2020). A tag with no positive or no negative clip has no ROC curve
  and is left out of the average.

  Args:
    probabilities: float [clips, n_tags], any monotone score per tag.
    tags: 0/1 [clips, n_tags], the multi-hot ground truth.

  Returns:
    The mean area over the scorable tags, or None when no tag is scorable.
  """
  keep = _scorable_tags(tags)
  if not keep.any():
    return None
  return float(
    sk_metrics.roc_auc_score(
      tags[:, keep] > 0, probabilities[:, keep], average="macro"
    )
  )


def tag_pr_auc(probabilities: np.ndarray, tags: np.ndarray) -> float | None:
  """Macro PR-AUC over tags: average precision (scikit-learn), per tag.

  Each tag's average precision, sum_n (R_n - R_{n-1}) P_n over the
  thresholds n (scikit-learn `average_precision_score`), averaged over tags
  with equal weight (Won et al., SMC 2020). A tag with no positive or no
  negative clip is left out of the average.

  Args:
    probabilities: float [clips, n_tags].
    tags: 0/1 [clips, n_tags].

  Returns:
    The mean average precision over the scorable tags, or None when no tag
    is scorable.
  """
  keep = _scorable_tags(tags)
  if not keep.any():
    return None
  return float(
    sk_metrics.average_precision_score(
      tags[:, keep] > 0, probabilities[:, keep], average="macro"
    )
  )
