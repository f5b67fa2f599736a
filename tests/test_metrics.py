import numpy as np
import pytest

from mcl.trainer import metrics

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


# 4 clips x 3 tags. Tag 0: positives score 0.9, 0.2, negatives 0.7, 0.4;
# tag 1: positives 0.6, 0.8 above negatives 0.1, 0.3; tag 2 has no
# positive clip (and, in the second check, no negative clip).
TAG_PROBABILITIES = np.array(
  [[0.9, 0.1, 0.5], [0.4, 0.6, 0.2], [0.7, 0.3, 0.9], [0.2, 0.8, 0.1]]
)
TAGS = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0]])


def test_tag_roc_auc_is_the_macro_area_over_scorable_tags():
  # Tag 0: 2 of 4 positive-negative pairs ordered; tag 1: 4 of 4.
  expected = (2 / 4 + 1.0) / 2
  assert metrics.tag_roc_auc(TAG_PROBABILITIES, TAGS) == (
    pytest.approx(expected)
  )
  all_positive = TAGS.copy()
  all_positive[:, 2] = 1
  assert metrics.tag_roc_auc(TAG_PROBABILITIES, all_positive) == (
    pytest.approx(expected)
  )
  assert metrics.tag_roc_auc(TAG_PROBABILITIES, np.zeros((4, 3))) is None


def test_tag_pr_auc_is_the_macro_average_precision_over_scorable_tags():
  # Tag 0 ranked +, -, -, +: recall 1/2 at precision 1, then 1 at 2/4.
  tag_0 = 0.5 * 1.0 + 0.5 * (2 / 4)
  expected = (tag_0 + 1.0) / 2
  assert metrics.tag_pr_auc(TAG_PROBABILITIES, TAGS) == pytest.approx(expected)
  assert metrics.tag_pr_auc(TAG_PROBABILITIES, np.ones((4, 3))) is None
