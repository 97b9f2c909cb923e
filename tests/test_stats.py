"""The statistics are scipy's: on fixed data and seeds they agree with calling scipy.stats directly."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy import stats as scipy_stats

from promptops.evaluation import _stats as stats

A_CORRECT = [1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1]
B_CORRECT = [1, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("a_only, b_only", [(0, 0), (0, 1), (5, 0), (3, 3), (2, 9), (12, 3), (40, 61), (170, 200), (900, 1000)])
def test_mcnemar_exact_is_a_binomial_test_on_the_discordant_pairs(a_only: int, b_only: int) -> None:
    result = stats.mcnemar_from_counts(a_only, b_only)
    n = a_only + b_only
    expected = scipy_stats.binomtest(a_only, n, 0.5).pvalue if n else 1.0
    assert result.p_value == pytest.approx(expected, rel=1e-9, abs=1e-15)
    k = min(a_only, b_only)
    mid = min(1.0, 2 * scipy_stats.binom.cdf(k, n, 0.5) - scipy_stats.binom.pmf(k, n, 0.5)) if n else 1.0
    assert result.mid_p_value == pytest.approx(mid, rel=1e-9, abs=1e-15)
    assert result.mid_p_value <= result.p_value


def test_mcnemar_counts_the_discordant_examples() -> None:
    result = stats.mcnemar([bool(x) for x in A_CORRECT], [bool(x) for x in B_CORRECT])
    assert (result.a_only, result.b_only) == (2, 7)
    assert result.p_value == pytest.approx(scipy_stats.binomtest(2, 9, 0.5).pvalue)


@pytest.mark.parametrize("table", [(3, 10, 8, 10), (0, 12, 5, 12), (1, 1, 0, 1), (45, 900, 30, 100), (7, 7, 0, 9), (120, 1000, 150, 1000), (0, 0, 3, 5)])
def test_fisher_exact_matches_scipy(table) -> None:
    a_successes, a_total, b_successes, b_total = table
    result = stats.fisher_exact(a_successes, a_total, b_successes, b_total)
    _, expected = scipy_stats.fisher_exact([[a_successes, a_total - a_successes], [b_successes, b_total - b_successes]])
    assert result.p_value == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_paired_bootstrap_matches_scipy_resample_for_resample() -> None:
    a, b = np.array(A_CORRECT, float), np.array(B_CORRECT, float)
    interval = stats.paired_bootstrap(a, b, resamples=3000, seed=11, confidence=0.9)
    expected = scipy_stats.bootstrap(
        (a, b), lambda x, y, axis: y.mean(axis=axis) - x.mean(axis=axis), paired=True, vectorized=True,
        n_resamples=3000, batch=stats.batch_size(len(a), 3000), method="percentile", confidence_level=0.9,
        rng=np.random.default_rng(11),
    )
    assert interval.estimate == pytest.approx(b.mean() - a.mean())
    assert (interval.low, interval.high) == pytest.approx(tuple(expected.confidence_interval), abs=1e-12)
    assert interval.resamples == 3000 and interval.low <= interval.estimate <= interval.high


def test_paired_bootstrap_of_f1_from_counts_matches_scipy_on_resampled_indices() -> None:
    rng = np.random.default_rng(3)
    a_counts = rng.integers(0, 3, (25, 3))
    b_counts = rng.integers(0, 3, (25, 3))
    interval = stats.paired_bootstrap(a_counts, b_counts, stats.f1_from_counts, resamples=2000, seed=5)

    def f1_difference(index, axis):
        return stats.f1_from_counts(b_counts[index]) - stats.f1_from_counts(a_counts[index])

    expected = scipy_stats.bootstrap(
        (np.arange(25),), f1_difference, vectorized=True, n_resamples=2000, batch=stats.batch_size(25, 2000),
        method="percentile", rng=np.random.default_rng(5),
    )
    assert (interval.low, interval.high) == pytest.approx(tuple(expected.confidence_interval), abs=1e-12)
    tp, fp, fn = b_counts.sum(axis=0)
    assert stats.f1_from_counts(b_counts[None])[0] == pytest.approx(2 * tp / (2 * tp + fp + fn))


def test_unpaired_bootstrap_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.exponential(0.8, 40), rng.exponential(1.0, 23)
    interval = stats.unpaired_bootstrap(a, b, resamples=2500, seed=9)
    expected = scipy_stats.bootstrap(
        (a, b), lambda x, y, axis: y.mean(axis=axis) - x.mean(axis=axis), vectorized=True, n_resamples=2500,
        batch=stats.batch_size(40, 2500), method="percentile", rng=np.random.default_rng(9),
    )
    assert (interval.low, interval.high) == pytest.approx(tuple(expected.confidence_interval), abs=1e-12)


def test_bootstraps_are_reproducible_and_batches_do_not_change_them(monkeypatch) -> None:
    a, b = np.array(A_CORRECT, float), np.array(B_CORRECT, float)
    first = stats.paired_bootstrap(a, b, resamples=1000, seed=2)
    assert stats.paired_bootstrap(a, b, resamples=1000, seed=2) == first
    assert stats.paired_bootstrap(a, b, resamples=1000, seed=3) != first
    assert stats.paired_bootstrap([1.0], [0.0]) == stats.Interval(-1.0, -1.0, -1.0, 0.95, 0)
    with pytest.raises(ValueError, match="equal shapes"):
        stats.paired_bootstrap([1, 0], [1])


def test_an_arm_of_one_value_is_not_resampled() -> None:
    one, many = np.array([0.4]), np.random.default_rng(6).exponential(1.0, 30)
    interval = stats.unpaired_bootstrap(one, many, resamples=1500, seed=8)
    expected = scipy_stats.bootstrap(
        (many,), lambda y, axis: y.mean(axis=axis) - 0.4, vectorized=True, n_resamples=1500,
        batch=stats.batch_size(30, 1500), method="percentile", rng=np.random.default_rng(8),
    )
    assert (interval.low, interval.high) == pytest.approx(tuple(expected.confidence_interval), abs=1e-12)
    flipped = stats.unpaired_bootstrap(many, one, resamples=1500, seed=8)
    assert (flipped.low, flipped.high) == pytest.approx((-interval.high, -interval.low), abs=1e-12)
    assert stats.unpaired_bootstrap([1.0], [3.0]) == stats.Interval(2.0, 2.0, 2.0, 0.95, 0)


def test_bootstrap_arguments_out_of_range_are_refused_and_one_resample_is_quiet() -> None:
    with pytest.raises(ValueError, match="confidence 1.0"):
        stats.paired_bootstrap([1, 0], [0, 1], confidence=1.0)
    with pytest.raises(ValueError, match="resamples 0"):
        stats.unpaired_bootstrap([1, 0], [0, 1], resamples=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stats.paired_bootstrap([1, 0, 1], [0, 0, 1], resamples=1).resamples == 1


def test_scipy_is_imported_only_when_a_test_runs() -> None:
    code = "import sys; import promptops.cli, promptops.evaluation._stats; print('scipy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
