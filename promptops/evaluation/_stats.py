"""The statistics behind `compare`, `check` and `ab-report`: `scipy.stats` tests and bootstrap, seeded.

Two prompts scored on the same examples are *paired*: each example is its own control, so the
tests look only at the examples where the two differ (McNemar) and resample examples, not
scores (paired bootstrap). Two arms of an online A/B test see different users, so they are
*unpaired*: Fisher's exact test and a bootstrap that resamples each arm on its own.

Choices, and why:

- McNemar's test is the exact conditional one: among the n discordant examples, the count A
  got right and B wrong is Binomial(n, 1/2) under "no difference" (`scipy.stats.binomtest`).
  Eval sets here are small (tens of examples, a handful discordant), where the chi-square
  approximation is poor. The exact p-value never exceeds the nominal level, so it is
  conservative; the mid-p value (exact minus half the probability of the observed table,
  Fagerland et al. 2013, from `scipy.stats.binom`) is reported beside it for those who prefer
  a test that is right on average.
- Intervals are bootstrap percentile intervals (`scipy.stats.bootstrap`, method 'percentile'):
  the difference of the statistic (accuracy, micro F1, mean cost per example) over resamples
  drawn with a seeded `numpy.random.Generator`, so a report can be reproduced exactly. What is
  resampled is example indices, so a statistic over rows of counts (micro F1 from per-example
  true positive, false positive and false negative counts) resamples whole examples, and a
  paired one draws the same examples for A and B. Resamples are drawn in batches of bounded
  size (`batch_size`), so memory stays small however many are asked for.
- Fisher's exact test for two proportions (`scipy.stats.fisher_exact`): exact at any sample
  size, where the two-proportion z-test is not for small arms or rare outcomes.

scipy is imported inside the functions that use it, so the CLI starts without it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

DEFAULT_RESAMPLES = 10_000
DEFAULT_CONFIDENCE = 0.95
# Resamples per batch: one batch holds at most this many drawn indices (16 MB of int64).
_BATCH_CELLS = 2 ** 21

Statistic = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class McNemarResult:
    """Paired binary outcomes: `a_only` examples only A got right, `b_only` only B."""

    a_only: int
    b_only: int
    p_value: float  # exact, two-sided
    mid_p_value: float


@dataclass(frozen=True)
class Interval:
    """A bootstrap percentile interval around the observed `estimate`."""

    estimate: float
    low: float
    high: float
    confidence: float
    resamples: int

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class FisherResult:
    """Two independent proportions, successes of totals; `p_value` is two-sided."""

    a_successes: int
    a_total: int
    b_successes: int
    b_total: int
    p_value: float


# --- exact tests ----------------------------------------------------------------------


def mcnemar(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> McNemarResult:
    """McNemar's exact test on two paired sequences of right/wrong."""
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes need equal lengths, got {a.size} and {b.size}")
    return mcnemar_from_counts(int(np.sum(a & ~b)), int(np.sum(~a & b)))


def mcnemar_from_counts(a_only: int, b_only: int) -> McNemarResult:
    """The exact p-value is the two-sided binomial test of a_only in a_only + b_only trials at 1/2."""
    n = a_only + b_only
    if n == 0:
        return McNemarResult(a_only, b_only, 1.0, 1.0)
    from scipy.stats import binom, binomtest

    exact = float(binomtest(a_only, n, 0.5).pvalue)
    k = min(a_only, b_only)
    # Each tail gives up half the observed table's probability: P(X <= k) + P(X >= n - k) - P(X = k).
    mid = min(1.0, 2 * float(binom.cdf(k, n, 0.5)) - float(binom.pmf(k, n, 0.5)))  # 1 when a_only == b_only
    return McNemarResult(a_only, b_only, exact, mid)


def fisher_exact(a_successes: int, a_total: int, b_successes: int, b_total: int) -> FisherResult:
    """Fisher's exact test, two-sided: the probability of every table with the same margins
    no likelier than the one observed."""
    for count, total in ((a_successes, a_total), (b_successes, b_total)):
        if not 0 <= count <= total:
            raise ValueError(f"successes {count} must be between 0 and the total {total}")
    from scipy.stats import fisher_exact as scipy_fisher_exact

    table = [[a_successes, a_total - a_successes], [b_successes, b_total - b_successes]]
    p_value = float(scipy_fisher_exact(table).pvalue)  # 1 when a margin is zero
    return FisherResult(a_successes, a_total, b_successes, b_total, min(1.0, p_value))


# --- bootstrap intervals ----------------------------------------------------------------


def mean(sample: np.ndarray) -> np.ndarray:
    """The mean over examples of each resample (axis -1 of a (resamples, n) array)."""
    return sample.mean(axis=-1)


def batch_size(n: int, resamples: int) -> int:
    """Resamples drawn per batch for `n` examples (scipy's `batch`): at most `_BATCH_CELLS` indices at once."""
    return max(1, min(resamples, _BATCH_CELLS // max(n, 1)))


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    statistic: Statistic = mean,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """Interval of statistic(B) - statistic(A), resampling examples (the same ones for both).

    `a` and `b` hold one value per example (or one row of counts per example, for statistics
    such as F1 that are not a mean); `statistic` maps an array of resamples, examples along
    axis 1, to one value per resample.
    """
    a_values, b_values = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a_values.shape != b_values.shape:
        raise ValueError(f"paired samples need equal shapes, got {a_values.shape} and {b_values.shape}")
    n = a_values.shape[0]
    estimate = float(statistic(b_values[None])[0] - statistic(a_values[None])[0])
    if n < 2:
        return Interval(estimate, estimate, estimate, confidence, 0)

    def difference(index: np.ndarray, axis: int = -1) -> np.ndarray:
        rows = _resample_rows(index)
        return (statistic(b_values[rows]) - statistic(a_values[rows])).reshape(index.shape[:-1])

    # One sample of indices: each resample draws examples once, for A and B alike.
    return _bootstrap_interval(estimate, (np.arange(n),), difference, batch_size(n, resamples),
                               resamples=resamples, confidence=confidence, seed=seed)


def unpaired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    statistic: Statistic = mean,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """Interval of statistic(B) - statistic(A) for two independent samples, each resampled on its own."""
    a_values, b_values = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(a_values) or not len(b_values):
        raise ValueError("both samples need at least one value")
    estimate = float(statistic(b_values[None])[0] - statistic(a_values[None])[0])
    if len(a_values) < 2 and len(b_values) < 2:
        return Interval(estimate, estimate, estimate, confidence, 0)
    arms = (a_values, b_values)

    def difference(*indices: np.ndarray, axis: int = -1) -> np.ndarray:
        left = list(indices)  # one index sample per arm of two or more values, A's first
        a_statistic, b_statistic = (statistic(arm[_resample_rows(left.pop(0))]) if len(arm) > 1 else statistic(arm[None])
                                    for arm in arms)
        return (b_statistic - a_statistic).reshape(indices[0].shape[:-1])

    # scipy wants two or more values in each sample. A one-value arm resamples to itself, and an
    # index drawn below 1 takes nothing from the generator, so leaving it out draws the same numbers.
    samples = tuple(np.arange(len(arm)) for arm in arms if len(arm) > 1)
    return _bootstrap_interval(estimate, samples, difference, batch_size(max(len(a_values), len(b_values)), resamples),
                               resamples=resamples, confidence=confidence, seed=seed)


def _resample_rows(index: np.ndarray) -> np.ndarray:
    """Resampled indices as (resamples, n): scipy passes the original sample (one row) once, for its estimate."""
    return index.reshape(-1, index.shape[-1])


def _bootstrap_interval(
    estimate: float,
    samples: tuple[np.ndarray, ...],
    difference: Callable[..., np.ndarray],
    batch: int,
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> Interval:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence} must be between 0 and 1")
    if resamples < 1:
        raise ValueError(f"resamples {resamples} must be at least 1")
    from scipy.stats import bootstrap

    with warnings.catch_warnings():
        if resamples == 1:  # scipy's standard error, not used here, warns without a second resample
            warnings.simplefilter("ignore", RuntimeWarning)
        result = bootstrap(samples, difference, vectorized=True, n_resamples=resamples, batch=batch,
                           confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return Interval(estimate, float(low), float(high), confidence, int(result.bootstrap_distribution.size))


def f1_from_counts(counts: np.ndarray) -> np.ndarray:
    """F1 of each resample from per-example (true positive, false positive, false negative) counts.

    With nothing to find and nothing found, F1 is 1 (as `metrics.FieldScore` scores it)."""
    true_positives, false_positives, false_negatives = (counts[..., i].sum(axis=-1) for i in range(3))
    denominator = 2 * true_positives + false_positives + false_negatives
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * true_positives / np.where(denominator > 0, denominator, 1), 1.0)


def percentile(values: Sequence[float], percent: float) -> Optional[float]:
    """A percentile of the values, None when there are none."""
    if not len(values):
        return None
    return float(np.percentile(np.asarray(values, dtype=float), percent))
