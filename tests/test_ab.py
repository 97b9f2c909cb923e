"""A/B tests: sticky assignment by a stable hash, and the per-arm report from traces and feedback."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as scipy_stats

from promptops.reports.markdown import ab_markdown
from promptops.evaluation import _stats as stats
from promptops.runtime import Outcome, SplitError, check_split, choose_arm, summarize_outcomes
from promptops.cli import main

SPLIT = {"production": 0.9, "candidate": 0.1}
KEYS = [f"user-{i}" for i in range(10_000)]


def test_assignment_is_sticky_and_close_to_the_split_over_10000_keys() -> None:
    arms = [choose_arm(SPLIT, key, salt="banking_intent") for key in KEYS]
    assert arms == [choose_arm(SPLIT, key, salt="banking_intent") for key in KEYS]  # same key, same arm, every call
    share = arms.count("candidate") / len(arms)
    assert abs(share - 0.1) < 0.009, share  # three standard errors of a 10% share over 10,000 keys
    reordered = {"candidate": 0.1, "production": 0.9}
    assert [choose_arm(reordered, key, salt="banking_intent") for key in KEYS[:500]] == arms[:500]
    # the same in every process and release: sha256 of salt and key, not Python's salted hash()
    assert [choose_arm(SPLIT, key, salt="banking_intent") for key in ("user-0", "user-1", "alice")] == ["candidate", "production", "production"]
    for key in KEYS[:200]:
        point = int.from_bytes(hashlib.sha256(f"banking_intent\x1f{key}".encode()).digest()[:8], "big") / 2 ** 64
        assert choose_arm(SPLIT, key, salt="banking_intent") == ("candidate" if point < 0.1 else "production")


def test_each_prompt_splits_independently_and_growing_an_arm_keeps_its_users() -> None:
    first = {key for key in KEYS if choose_arm(SPLIT, key, salt="banking_intent") == "candidate"}
    other = {key for key in KEYS if choose_arm(SPLIT, key, salt="restaurant_booking") == "candidate"}
    assert abs(len(first & other) / len(first) - 0.1) < 0.04  # overlap as for independent draws, not the same users
    grown = {key for key in KEYS if choose_arm({"production": 0.8, "candidate": 0.2}, key, salt="banking_intent") == "candidate"}
    assert first <= grown
    assert choose_arm({"production": 1.0, "candidate": 0.0}, "anyone", salt="x") == "production"
    assert choose_arm({"a": 0.25, "b": 0.25, "c": 0.5}, 42, salt="x") == choose_arm({"a": 0.25, "b": 0.25, "c": 0.5}, "42", salt="x")


@pytest.mark.parametrize("split, words", [
    ({"production": 0.9, "candidate": 0.2}, "add up to 1.1, not 1"),
    ({"production": 1.1, "candidate": -0.1}, "must be a number from 0 to 1"),
    ({}, "must map arm names to shares"),
    ({"production": "90%"}, "must be a number from 0 to 1, not '90%'"),
])
def test_a_split_that_cannot_be_one_is_refused(split, words) -> None:
    with pytest.raises(SplitError, match=words.replace("(", r"\(").replace(")", r"\)")):
        check_split(split)


def outcomes(arm: str, correct: int, wrong: int, unlabeled: int, latency_s: float, cost_usd: float) -> list[Outcome]:
    verdicts = [True] * correct + [False] * wrong + [None] * unlabeled
    return [Outcome(arm, "v2" if arm == "candidate" else "v1", "ok", cost_usd, latency_s + 0.01 * (i % 7), verdict)
            for i, verdict in enumerate(verdicts)]


def test_the_arm_statistics_match_scipy() -> None:
    production = outcomes("production", 60, 40, 20, 0.8, 1e-5)
    candidate = outcomes("candidate", 18, 4, 5, 0.9, 2e-5)
    report = summarize_outcomes("banking_intent", production + candidate, resamples=2000, seed=4)
    assert report.reference == "production"
    by_arm = {arm.arm: arm for arm in report.arms}
    assert (by_arm["candidate"].traces, by_arm["candidate"].labeled, by_arm["candidate"].correct) == (27, 22, 18)
    assert by_arm["production"].accuracy == pytest.approx(0.6) and by_arm["candidate"].versions == ("v2",)
    [comparison] = report.comparisons
    _, fisher = scipy_stats.fisher_exact([[18, 4], [60, 40]])
    assert comparison.accuracy_test.p_value == pytest.approx(fisher)
    theirs, mine = np.array([1.0] * 60 + [0.0] * 40), np.array([1.0] * 18 + [0.0] * 4)
    expected = scipy_stats.bootstrap(
        (theirs, mine), lambda x, y, axis: y.mean(axis=axis) - x.mean(axis=axis), vectorized=True, n_resamples=2000,
        batch=stats.batch_size(100, 2000), method="percentile", rng=np.random.default_rng(4))
    assert comparison.accuracy.estimate == pytest.approx(18 / 22 - 0.6)
    assert (comparison.accuracy.low, comparison.accuracy.high) == pytest.approx(tuple(expected.confidence_interval))
    assert comparison.latency_s.estimate == pytest.approx(by_arm["candidate"].latency_mean_s - by_arm["production"].latency_mean_s)
    assert comparison.cost_per_call_usd.estimate == pytest.approx(1e-5)
    text = ab_markdown(report)
    assert "| candidate v2 | 27 | 27 / 0 / 0 / 0 / 0 | 22 | 0.818 (18/22) |" in text
    assert f"Fisher's exact p = {comparison.accuracy_test.p_value:.3g}" in text


def test_ab_report_reads_the_arms_from_traces_and_feedback(mlflow_store: str, log_traces) -> None:
    log_traces("banking_intent")
    result = CliRunner().invoke(main, ["ab-report", "banking_intent", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    arms = {arm["arm"]: arm for arm in report["arms"]}
    assert report["reference"] == "production" and report["unrouted"] == 1
    assert (arms["production"]["traces"], arms["production"]["labeled"], arms["production"]["correct"]) == (4, 4, 3)
    assert (arms["candidate"]["traces"], arms["candidate"]["labeled"], arms["candidate"]["correct"]) == (3, 2, 2)
    assert arms["candidate"]["statuses"] == {"ok": 2, "refused": 1}
    assert arms["production"]["cost_per_call_usd"] == pytest.approx(1e-5)
    [comparison] = report["comparisons"]
    assert comparison["accuracy_test"]["p_value"] == pytest.approx(scipy_stats.fisher_exact([[2, 0], [3, 1]])[1])

    text = CliRunner().invoke(main, ["ab-report", "banking_intent"]).stdout
    assert "## banking_intent: A/B report, 2 arms, 7 routed requests" in text
    assert "**candidate vs production**: accuracy +0.250" in text
    assert "1 other traced request of banking_intent carries no arm" in text
    later = CliRunner().invoke(main, ["ab-report", "banking_intent", "--since", "2999-01-01"])
    assert later.exit_code == 0 and "0 routed requests since 2999-01-01" in later.stdout


def test_ab_report_of_a_prompt_never_split(mlflow_store: str) -> None:
    result = CliRunner().invoke(main, ["ab-report", "restaurant_booking"])
    assert result.exit_code == 0 and "No traced request of restaurant_booking carries an arm" in result.stdout
    bad = CliRunner().invoke(main, ["ab-report", "restaurant_booking", "--since", "last week"])
    assert bad.exit_code == 1 and bad.stderr.strip() == "Error: --since 'last week' is not a date: use YYYY-MM-DD or an ISO date-time"
