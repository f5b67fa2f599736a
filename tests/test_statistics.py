"""Bootstrap intervals and paired tests against scipy on hand-made runs."""

import math

import numpy as np
import pytest
from scipy import stats

from mcl.analysis import statistics

# Ten (fold, seed) runs of two methods, accuracies on 4-clip tasks.
DEN = [0.75, 0.80, 0.70, 0.85, 0.90, 0.65, 0.75, 0.80, 0.95, 0.70]
EWC = [0.70, 0.80, 0.55, 0.75, 0.85, 0.60, 0.80, 0.65, 0.90, 0.60]


def test_bootstrap_interval_equals_scipy_percentile_bootstrap():
  low, high = statistics.bootstrap_interval(DEN, seed=3)
  expected = stats.bootstrap(
    (np.asarray(DEN),),
    np.mean,
    confidence_level=0.95,
    n_resamples=10_000,
    method="percentile",
    rng=np.random.default_rng(3),
  ).confidence_interval
  assert (low, high) == (
    pytest.approx(expected.low),
    pytest.approx(expected.high),
  )
  assert low < np.mean(DEN) < high
  # By hand: the 2.5 and 97.5 percentiles of 10,000 resampled means.
  rng = np.random.default_rng(0)
  means = rng.choice(DEN, size=(10_000, len(DEN))).mean(axis=1)
  by_hand = np.percentile(means, [2.5, 97.5])
  assert abs(low - by_hand[0]) < 0.02 and abs(high - by_hand[1]) < 0.02


def test_bootstrap_interval_of_constant_and_single_values():
  assert statistics.bootstrap_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)
  assert all(math.isnan(x) for x in statistics.bootstrap_interval([0.5]))


def test_paired_difference_equals_scipy_wilcoxon():
  d = statistics.paired_difference(DEN, EWC)
  differences = np.subtract(DEN, EWC)
  assert d.mean == pytest.approx(differences.mean())
  assert d.p_value == pytest.approx(stats.wilcoxon(DEN, EWC).pvalue)
  assert d.p_value == pytest.approx(stats.wilcoxon(differences).pvalue)
  assert (d.n, d.nonzero) == (10, 9)  # The zero difference is dropped.
  assert d.low < d.mean < d.high
  # The order matters for the sign, not for the p-value.
  reverse = statistics.paired_difference(EWC, DEN)
  assert reverse.mean == pytest.approx(-d.mean)
  assert reverse.p_value == pytest.approx(d.p_value)


def test_paired_difference_of_identical_figures_is_not_significant():
  d = statistics.paired_difference(DEN, DEN)
  assert (d.mean, d.p_value, d.nonzero) == (0.0, 1.0, 0)


def test_paired_difference_rejects_unpaired_lengths():
  with pytest.raises(ValueError, match="differ in length"):
    statistics.paired_difference(DEN, EWC[:-1])


def test_equal_differences_tie_in_the_ranks():
  # Differences 0.05, 0.05, 0.05 (three floats that differ in the last
  # bits), -0.1 and 0.2: the 0.05s share rank 2, so W+ = 2 * 3 + 5 = 11
  # and W- = 4 (scipy reports min(W+, W-) for the two-sided test).
  a = [0.75, 0.90, 0.35, 0.5, 0.9]
  b = [0.70, 0.85, 0.30, 0.6, 0.7]
  assert len({x - y for x, y in zip(a[:3], b[:3], strict=True)}) > 1
  d = statistics.paired_difference(a, b)
  expected = stats.wilcoxon([0.05, 0.05, 0.05, -0.1, 0.2])
  assert expected.statistic == 4.0
  assert d.p_value == pytest.approx(expected.pvalue)


def test_holm_matches_the_step_down_by_hand():
  # Sorted 0.01, 0.02, 0.03, 0.04: x4, x3, x2, x1, then running maxima.
  p = [0.03, 0.01, float("nan"), 0.04, 0.02]
  adjusted = statistics.holm(p)
  by_hand = {0.01: 0.04, 0.02: 0.06, 0.03: 0.06, 0.04: 0.06}
  assert np.isnan(adjusted[2])
  for raw, adj in zip(p, adjusted, strict=True):
    if not np.isnan(raw):
      assert adj == pytest.approx(by_hand[raw])
  assert statistics.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_corrected_resampled_t_equals_its_formula():
  d = [0.10, 0.05, 0.20, -0.05, 0.15]
  t, p = statistics.corrected_resampled_t(d, test_train_ratio=1 / 3)
  mean, var = np.mean(d), np.var(d, ddof=1)
  expected = mean / np.sqrt((1 / 5 + 1 / 3) * var)
  assert t == pytest.approx(expected)
  assert p == pytest.approx(2 * stats.t.sf(abs(expected), 4))
  # The correction only widens: the plain paired t-test's p is smaller.
  assert p > stats.ttest_1samp(d, 0).pvalue
  assert statistics.corrected_resampled_t([0.0, 0.0], 0.5) == (0.0, 1.0)
  assert all(np.isnan(statistics.corrected_resampled_t([0.1], 0.5)))


def test_paired_difference_carries_the_corrected_p():
  d = statistics.paired_difference(DEN, EWC, test_train_ratio=0.25)
  _, p = statistics.corrected_resampled_t(np.subtract(DEN, EWC), 0.25)
  assert d.corrected_p_value == pytest.approx(p)
