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
