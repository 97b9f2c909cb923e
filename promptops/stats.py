"""The statistics behind `compare`, `check` and `ab-report`: pure numpy, seeded, no scipy at run time.

Two prompts scored on the same examples are *paired*: each example is its own control, so the
tests look only at the examples where the two differ (McNemar) and resample examples, not
scores (paired bootstrap). Two arms of an online A/B test see different users, so they are
*unpaired*: Fisher's exact test and a bootstrap that resamples each arm on its own.

Choices, and why:

- McNemar's test is the exact conditional one: among the n discordant examples, the count A
  got right and B wrong is Binomial(n, 1/2) under "no difference". Eval sets here are small
  (tens of examples, a handful discordant), where the chi-square approximation is poor. The
  exact p-value never exceeds the nominal level, so it is conservative; the mid-p value
  (exact minus half the probability of the observed table, Fagerland et al. 2013) is
  reported beside it for those who prefer a test that is right on average.
- Intervals are bootstrap percentile intervals: the difference of the statistic (accuracy,
  micro F1, mean cost per example) over resamples drawn with a seeded `numpy.random.Generator`,
  so a report can be reproduced exactly. Resamples are drawn in batches exactly as
  `scipy.stats.bootstrap` draws them, so both give the same numbers for the same seed.
- Fisher's exact test for two proportions: exact at any sample size, where the two-proportion
  z-test is not for small arms or rare outcomes.
"""

from __future__ import annotations

import math
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
    """The exact p-value is P(X <= min) + P(X >= max) for X ~ Binomial(a_only + b_only, 1/2), at most 1."""
    n = a_only + b_only
    if n == 0:
        return McNemarResult(a_only, b_only, 1.0, 1.0)
    k = min(a_only, b_only)
    tail = float(np.exp(_log_sum(_binomial_log_pmf(np.arange(k + 1), n))))
    point = float(np.exp(_binomial_log_pmf(np.array([k]), n)[0]))
    exact = min(1.0, 2 * tail)
    mid = min(1.0, 2 * tail - point)  # 1 when a_only == b_only, as the exact p is
    return McNemarResult(a_only, b_only, exact, mid)


def fisher_exact(a_successes: int, a_total: int, b_successes: int, b_total: int) -> FisherResult:
    """Fisher's exact test, two-sided: the probability of every table with the same margins
    no likelier than the one observed (as `scipy.stats.fisher_exact` computes it)."""
    for count, total in ((a_successes, a_total), (b_successes, b_total)):
        if not 0 <= count <= total:
            raise ValueError(f"successes {count} must be between 0 and the total {total}")
    successes = a_successes + b_successes
    total = a_total + b_total
    low, high = max(0, successes - b_total), min(successes, a_total)
    if total == 0 or low == high:
        return FisherResult(a_successes, a_total, b_successes, b_total, 1.0)
    support = np.arange(low, high + 1)
    log_pmf = _hypergeometric_log_pmf(support, total, successes, a_total)
    observed = log_pmf[a_successes - low]
    # A relative tolerance, as scipy uses, so tables exactly as likely are not lost to rounding.
    as_extreme = log_pmf <= observed + math.log1p(1e-7)
    p_value = float(np.exp(_log_sum(log_pmf[as_extreme])))
    return FisherResult(a_successes, a_total, b_successes, b_total, min(1.0, p_value))


def _binomial_log_pmf(k: np.ndarray, n: int) -> np.ndarray:
    return np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in k]) - n * math.log(2)


def _hypergeometric_log_pmf(k: np.ndarray, total: int, successes: int, drawn: int) -> np.ndarray:
    def log_choose(n: int, r: int) -> float:
        return math.lgamma(n + 1) - math.lgamma(r + 1) - math.lgamma(n - r + 1)

    denominator = log_choose(total, drawn)
    return np.array([log_choose(successes, int(i)) + log_choose(total - successes, drawn - int(i)) - denominator for i in k])


def _log_sum(values: np.ndarray) -> float:
    if values.size == 0:
        return -math.inf
    top = float(np.max(values))
    return top + math.log(float(np.sum(np.exp(values - top))))


# --- bootstrap intervals ----------------------------------------------------------------


def mean(sample: np.ndarray) -> np.ndarray:
    """The mean over examples of each resample (axis -1 of a (resamples, n) array)."""
    return sample.mean(axis=-1)


def batch_size(n: int, resamples: int) -> int:
    """Resamples drawn per batch for `n` examples; pass it as `batch` to scipy to draw the same numbers."""
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
    rng = np.random.default_rng(seed)
    differences = []
    step = batch_size(n, resamples)
    for done in range(0, resamples, step):
        index = rng.integers(0, n, (min(step, resamples - done), n))
        differences.append(statistic(b_values[index]) - statistic(a_values[index]))
    return _percentile_interval(estimate, np.concatenate(differences), confidence)


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
    rng = np.random.default_rng(seed)
    differences = []
    step = batch_size(max(len(a_values), len(b_values)), resamples)
    for done in range(0, resamples, step):
        size = min(step, resamples - done)
        a_index = rng.integers(0, len(a_values), (size, len(a_values)))
        b_index = rng.integers(0, len(b_values), (size, len(b_values)))
        differences.append(statistic(b_values[b_index]) - statistic(a_values[a_index]))
    return _percentile_interval(estimate, np.concatenate(differences), confidence)


def _percentile_interval(estimate: float, distribution: np.ndarray, confidence: float) -> Interval:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence} must be between 0 and 1")
    alpha = (1 - confidence) / 2
    low, high = np.quantile(distribution, [alpha, 1 - alpha])
    return Interval(estimate, float(low), float(high), confidence, int(distribution.size))


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
