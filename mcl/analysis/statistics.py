"""Statistics of a sweep's runs: bootstrap intervals and paired tests.

A comparison's runs are (fold, seed) pairs. A method's figure is the mean
over its runs with a percentile bootstrap interval (Efron & Tibshirani
1993, ch. 13) over those runs; two methods are compared on the same
(fold, seed) pairs by the Wilcoxon signed-rank test of the paired
differences (Wilcoxon 1945), with Holm's step-down correction over the
methods compared (Holm 1979; statsmodels' `multipletests`). The bootstrap
and Wilcoxon treat the runs as independent draws; runs that share a fold
share their training and test clips, so beside them stands the corrected
resampled t-test of Nadeau & Bengio (2003), which widens the variance of
the mean difference by the test/train size ratio of a split.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy import stats
from statsmodels.stats import multitest

CONFIDENCE = 0.95
# n_test / n_train of GTZAN's five folds: one test fold, one validation
# fold, three training folds (`mcl.datasets.tasks.fold_split`).
FOLD_RATIO = 1 / 3
RESAMPLES = 10_000
# Figures such as accuracies on 4-clip tasks are multiples of 0.05 whose
# float differences are not bit-equal (0.75 - 0.70 != 0.90 - 0.85):
# rounding makes equal differences tie in the ranks and zeros drop out.
DECIMALS = 9


def bootstrap_interval(
  values: Sequence[float], seed: int = 0
) -> tuple[float, float]:
  """95 % percentile bootstrap interval of the mean of `values`.

  Args:
    values: one figure per run (e.g. final average accuracy), finite.
    seed: seed of the resampling, so a report is reproducible.

  Returns:
    (low, high); (v, v) when every value is v, (nan, nan) for fewer than
    two values (no resample differs from the sample).
  """
  x = np.asarray(values, np.float64)
  if x.size < 2:
    return float("nan"), float("nan")
  if np.all(x == x[0]):
    return float(x[0]), float(x[0])
  result = stats.bootstrap(
    (x,),
    np.mean,
    confidence_level=CONFIDENCE,
    n_resamples=RESAMPLES,
    method="percentile",
    rng=np.random.default_rng(seed),
  )
  interval = result.confidence_interval
  return float(interval.low), float(interval.high)


@dataclasses.dataclass(frozen=True)
class PairedDifference:
  """`a - b` over the runs both have.

  Attributes:
    mean: mean paired difference.
    low, high: its 95 % percentile bootstrap interval.
    p_value: two-sided Wilcoxon signed-rank p-value (zero differences
      dropped, scipy's default `zero_method="wilcox"`); 1.0 when every
      difference is zero; nan for no pair.
    n: pairs compared.
    nonzero: pairs whose difference is not zero (the test's sample).
    corrected_p_value: two-sided p of the corrected resampled t-test
      (`corrected_resampled_t`); nan for fewer than two pairs.
    holm_p_value: `p_value` Holm-corrected over the family it was
      compared in (`holm`, set by the report); nan until then.
  """

  mean: float
  low: float
  high: float
  p_value: float
  n: int
  nonzero: int
  corrected_p_value: float = float("nan")
  holm_p_value: float = float("nan")


def holm(p_values: Sequence[float]) -> list[float]:
  """Holm-Bonferroni adjusted p-values (Holm 1979), in the input order.

  Args:
    p_values: one family's p-values; nan entries (no test) are left out
      of the family and stay nan.

  Returns:
    The adjusted p-values (statsmodels' `multipletests(method="holm")`).
  """
  p = np.asarray(p_values, np.float64)
  out = np.full(p.shape, np.nan)
  tested = ~np.isnan(p)
  if tested.any():
    out[tested] = multitest.multipletests(p[tested], method="holm")[1]
  return out.tolist()


def corrected_resampled_t(
  differences: Sequence[float], test_train_ratio: float
) -> tuple[float, float]:
  """Nadeau & Bengio's (2003) corrected resampled t-test of a mean.

  t = mean(d) / sqrt((1 / J + n_test / n_train) * var(d)) over J paired
  differences d of runs that resample one data set (here, folds and
  seeds), with J - 1 degrees of freedom; the n_test / n_train term is
  what the plain t-test leaves out for overlapping training sets.

  Args:
    differences: J paired differences.
    test_train_ratio: n_test / n_train of one run's split (GTZAN's five
      folds: one test fold over three training folds, 1/3).

  Returns:
    (t, two-sided p); (nan, nan) for J < 2; (0, 1) when every difference
    is zero and (+-inf, 0) when all are one nonzero value.
  """
  d = np.asarray(differences, np.float64)
  if d.size < 2:
    return float("nan"), float("nan")
  mean, variance = float(np.mean(d)), float(np.var(d, ddof=1))
  if variance == 0:
    return (0.0, 1.0) if mean == 0 else (float(np.sign(mean) * np.inf), 0.0)
  t = mean / np.sqrt((1 / d.size + test_train_ratio) * variance)
  return float(t), float(2 * stats.t.sf(abs(t), d.size - 1))


def paired_difference(
  a: Sequence[float],
  b: Sequence[float],
  seed: int = 0,
  test_train_ratio: float = FOLD_RATIO,
) -> PairedDifference:
  """Paired difference of two methods' figures on the same runs.

  Args:
    a, b: figures of the two methods, position i of both from the same
      (fold, seed) run.
    seed: seed of the bootstrap.
    test_train_ratio: n_test / n_train of a run's split, for the
      corrected resampled t-test (GTZAN's folds: 1/3).

  Returns:
    The difference's mean, interval and test, computed on the
    differences rounded to `DECIMALS` places.

  Raises:
    ValueError: `a` and `b` differ in length.
  """
  if len(a) != len(b):
    raise ValueError(f"paired figures differ in length: {len(a)} vs {len(b)}")
  d = np.round(np.asarray(a, np.float64) - np.asarray(b, np.float64), DECIMALS)
  if d.size == 0:
    nan = float("nan")
    return PairedDifference(nan, nan, nan, nan, 0, 0)
  nonzero = int(np.count_nonzero(d))
  p_value = 1.0 if nonzero == 0 else float(stats.wilcoxon(d).pvalue)
  low, high = bootstrap_interval(d, seed)
  _, corrected = corrected_resampled_t(d, test_train_ratio)
  return PairedDifference(
    float(np.mean(d)), low, high, p_value, int(d.size), nonzero, corrected
  )
