import numpy as np
import pytest

from mcl import metrics

R = [
  [0.9, None, None],
  [0.7, 0.8, None],
  [0.6, 0.85, 1.0],
]


def test_continual_metrics_on_a_hand_matrix():
  assert metrics.average_accuracy(R) == pytest.approx((0.6 + 0.85 + 1.0) / 3)
  assert metrics.backward_transfer(R) == pytest.approx(
    ((0.6 - 0.9) + (0.85 - 0.8)) / 2
  )
  assert metrics.forgetting(R) == pytest.approx([0.3, -0.05])
  assert metrics.backward_transfer([[0.5]]) is None


def test_roc_auc_binary_and_undefined():
  probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3], [0.2, 0.8]])
  # Negatives score 0.1, 0.6; positives 0.3, 0.8: 3 of 4 pairs ordered.
  assert metrics.roc_auc(probabilities, np.array([0, 0, 1, 1])) == (
    pytest.approx(3 / 4)
  )
  assert metrics.roc_auc(probabilities, np.array([1, 1, 1, 1])) is None
  assert metrics.accuracy(probabilities, np.array([0, 0, 1, 1])) == 0.5
