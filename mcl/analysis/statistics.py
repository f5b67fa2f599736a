"""Statistics of a sweep's runs: bootstrap intervals and paired tests.

A comparison's runs are (fold, seed) pairs. A method's figure is the mean
over its runs with a percentile bootstrap interval (Efron & Tibshirani
1993, ch. 13) over those runs; two methods are compared on the same
(fold, seed) pairs by the Wilcoxon signed-rank test of the paired
differences (Wilcoxon 1945). Both treat the runs as independent draws;
runs that share a fold share their training and test clips (Nadeau &
Bengio 2003 on the dependence of cross-validation folds), so the intervals
are, if anything, too narrow, and the p-values too small.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
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
  """

  mean: float
  low: float
  high: float
  p_value: float
  n: int
  nonzero: int


def paired_difference(
  a: Sequence[float], b: Sequence[float], seed: int = 0
) -> PairedDifference:
  """Paired difference of two methods' figures on the same runs.

  Args:
    a, b: figures of the two methods, position i of both from the same
      (fold, seed) run.
    seed: seed of the bootstrap.

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
  return PairedDifference(
    float(np.mean(d)), low, high, p_value, int(d.size), nonzero
  )
