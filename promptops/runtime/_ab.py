"""Online A/B tests: which arm a caller gets, and how the arms did according to their traces.

Assignment is a pure function of the split, a salt (the prompt's name) and the caller's key:
no state to store, the same answer in every process and on every call (sticky), and
independent between prompts. The report reads the traced requests of the prompt's MLflow
experiment (tags `promptops.arm`, `promptops.status`, `promptops.cost_usd`,
`promptops.latency_s`) and the feedback on them: a `correct` assessment, or expectations for
output fields compared with what the trace answered.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from promptops.errors import PromptopsError
from promptops.evaluation import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, FisherResult, Interval, fisher_exact, percentile, unpaired_bootstrap

if TYPE_CHECKING:
    from promptops.tracking import TraceRecord

STATUSES = ("ok", "refused", "error", "fallback", "needs_review")
_TRUE = {"true", "yes", "y", "1", "correct", "right", "pass", "good"}
_FALSE = {"false", "no", "n", "0", "incorrect", "wrong", "fail", "bad"}


class SplitError(PromptopsError):
    """An A/B split whose shares are not numbers from 0 to 1 adding up to 1."""


# --- assignment --------------------------------------------------------------------------


def choose_arm(split: Mapping[str, float], key: str, *, salt: str) -> str:
    """The arm `key` falls in: sha256(salt, key) as a point of [0, 1), against the shares in arm-name order.

    Sorting the arms makes the answer independent of the mapping's order; growing one arm's
    share of a two-arm split only moves callers into that arm, never out of it.
    """
    arms = check_split(split)
    digest = hashlib.sha256(f"{salt}\x1f{key}".encode("utf-8")).digest()
    point = int.from_bytes(digest[:8], "big") / 2 ** 64
    cumulative = 0.0
    for arm, share in arms:
        cumulative += share
        if point < cumulative:
            return arm
    return next(arm for arm, share in reversed(arms) if share > 0)  # rounding at the top of [0, 1)


def check_split(split: Mapping[str, float]) -> list[tuple[str, float]]:
    """The (arm, share) pairs sorted by arm name; refuses shares that cannot be a split."""
    if not isinstance(split, Mapping) or not split:
        raise SplitError(f"split {split!r} must map arm names to shares, e.g. {{'production': 0.9, 'candidate': 0.1}}")
    arms = []
    for arm, share in sorted(split.items()):
        if not isinstance(arm, str) or not arm:
            raise SplitError(f"split {dict(split)!r}: arm names must be non-empty strings")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise SplitError(f"split {dict(split)!r}: the share of {arm!r} must be a number from 0 to 1, not {share!r}")
        arms.append((arm, float(share)))
    total = sum(share for _, share in arms)
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        raise SplitError(f"split {dict(split)!r}: the shares add up to {total:g}, not 1")
    return arms


# --- outcomes of traced requests ---------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One traced request of an arm; `correct` is None when nobody said whether it was right."""

    arm: str
    version: str
    status: str
    cost_usd: Optional[float]
    latency_s: Optional[float]
    correct: Optional[bool]


@dataclass(frozen=True)
class ArmSummary:
    """How one arm did: its requests, their statuses, accuracy on the labeled ones, cost and latency."""

    arm: str
    traces: int
    statuses: dict[str, int]
    versions: tuple[str, ...]
    labeled: int
    correct: int
    accuracy: Optional[float]
    cost_per_call_usd: Optional[float]
    latency_mean_s: Optional[float]
    latency_p50_s: Optional[float]
    latency_p95_s: Optional[float]


@dataclass(frozen=True)
class ArmComparison:
    """One arm against the reference arm: differences are arm minus reference."""

    arm: str
    reference: str
    accuracy: Optional[Interval]
    accuracy_test: Optional[FisherResult]
    cost_per_call_usd: Optional[Interval]
    latency_s: Optional[Interval]


@dataclass(frozen=True)
class ABReport:
    prompt: str
    since: Optional[str]
    arms: tuple[ArmSummary, ...]
    reference: Optional[str]
    comparisons: tuple[ArmComparison, ...]
    unrouted: int  # traces of the prompt that carry no arm (not served through a split)

    def summary(self) -> dict[str, Any]:
        """JSON-ready, for `--json` and notebooks."""
        return asdict(self)



def summarize_outcomes(
    prompt: str,
    outcomes: Sequence[Outcome],
    *,
    reference: Optional[str] = None,
    unrouted: int = 0,
    since: Optional[str] = None,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> ABReport:
    """Per-arm figures and each arm against the reference (default: `production` when it is an arm, else the largest)."""
    by_arm: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_arm.setdefault(outcome.arm, []).append(outcome)
    arms = tuple(_arm_summary(arm, by_arm[arm]) for arm in sorted(by_arm))
    if reference is not None and reference not in by_arm:
        raise PromptopsError(f"{prompt} has no traced request in arm {reference!r}; its arms are {', '.join(sorted(by_arm)) or 'none'}")
    if reference is None and by_arm:
        reference = "production" if "production" in by_arm else max(sorted(by_arm), key=lambda arm: len(by_arm[arm]))
    comparisons = tuple(
        _compare_arms(arm, reference, by_arm[arm], by_arm[reference], resamples=resamples, confidence=confidence, seed=seed)
        for arm in sorted(by_arm) if reference is not None and arm != reference
    )
    return ABReport(prompt, since, arms, reference, comparisons, unrouted)


def _arm_summary(arm: str, outcomes: list[Outcome]) -> ArmSummary:
    labeled = [o.correct for o in outcomes if o.correct is not None]
    costs = [o.cost_usd for o in outcomes if o.cost_usd is not None]
    latencies = [o.latency_s for o in outcomes if o.latency_s is not None]
    statuses: dict[str, int] = {}
    for outcome in outcomes:
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
    return ArmSummary(
        arm=arm,
        traces=len(outcomes),
        statuses=statuses,
        versions=tuple(sorted({o.version for o in outcomes if o.version}, key=_version_order)),
        labeled=len(labeled),
        correct=sum(labeled),
        accuracy=sum(labeled) / len(labeled) if labeled else None,
        cost_per_call_usd=sum(costs) / len(costs) if costs else None,
        latency_mean_s=sum(latencies) / len(latencies) if latencies else None,
        latency_p50_s=percentile(latencies, 50),
        latency_p95_s=percentile(latencies, 95),
    )


def _compare_arms(arm: str, reference: str, mine: list[Outcome], theirs: list[Outcome], **bootstrap: Any) -> ArmComparison:
    accuracy = test = cost = latency = None
    mine_labeled = [float(o.correct) for o in mine if o.correct is not None]
    theirs_labeled = [float(o.correct) for o in theirs if o.correct is not None]
    if mine_labeled and theirs_labeled:
        accuracy = unpaired_bootstrap(theirs_labeled, mine_labeled, **bootstrap)
        test = fisher_exact(int(sum(mine_labeled)), len(mine_labeled), int(sum(theirs_labeled)), len(theirs_labeled))
    mine_costs = [o.cost_usd for o in mine if o.cost_usd is not None]
    theirs_costs = [o.cost_usd for o in theirs if o.cost_usd is not None]
    if mine_costs and theirs_costs:
        cost = unpaired_bootstrap(theirs_costs, mine_costs, **bootstrap)
    mine_latencies = [o.latency_s for o in mine if o.latency_s is not None]
    theirs_latencies = [o.latency_s for o in theirs if o.latency_s is not None]
    if mine_latencies and theirs_latencies:
        latency = unpaired_bootstrap(theirs_latencies, mine_latencies, **bootstrap)
    return ArmComparison(arm, reference, accuracy, test, cost, latency)


# --- reading the traces ------------------------------------------------------------------


def ab_report(
    name: str,
    *,
    since: Optional[str | date | datetime] = None,
    reference: Optional[str] = None,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> ABReport:
    """The A/B report of prompt `name` from its traced requests (optionally those since a date)."""
    from promptops.artifact import resolve_prompt_path

    name = resolve_prompt_path(name).stem  # a misspelt name fails; it does not report "no traces"
    start_ms, since_text = _since(since)
    outcomes, unrouted = read_outcomes(name, since_ms=start_ms)
    return summarize_outcomes(name, outcomes, reference=reference, unrouted=unrouted, since=since_text,
                              resamples=resamples, confidence=confidence, seed=seed)


def read_outcomes(name: str, *, since_ms: Optional[int] = None) -> tuple[list[Outcome], int]:
    """The outcome of every traced request of `name` that carries an arm, and how many carry none."""
    from promptops import tracking

    outcomes, unrouted = [], 0
    for trace in tracking.search_traces(name, since_ms=since_ms):
        tags = trace.tags
        arm = tags.get("promptops.arm")
        if not arm:
            unrouted += 1
            continue
        outcomes.append(Outcome(
            arm=arm,
            version=tags.get("promptops.version", ""),
            status=tags.get("promptops.status", "ok"),
            cost_usd=_number(tags.get("promptops.cost_usd")),
            latency_s=_number(tags.get("promptops.latency_s")) if "promptops.latency_s" in tags else _duration_s(trace),
            correct=_correctness(trace),
        ))
    return outcomes, unrouted


def _correctness(trace: TraceRecord) -> Optional[bool]:
    """The latest valid `correct` feedback; else whether the answer matched every expectation; else None."""
    from promptops.evaluation import normalize

    feedback = [a for a in trace.assessments if a.name == "correct" and a.kind == "feedback" and a.error is None]
    if feedback:
        verdict = _truth(feedback[-1].value)
        if verdict is not None:
            return verdict
    expectations = trace.expectations()
    if not expectations:
        return None
    answer = _response(trace)
    if answer is None:
        return False  # refused or failed: whatever was expected, it was not given
    return all(normalize(expected) == normalize(answer.get(field)) for field, expected in expectations.items())


def _response(trace: TraceRecord) -> Optional[dict[str, Any]]:
    """The root span's outputs: from the preview, or from the whole trace when the preview was cut short."""
    if not trace.response_preview:
        return None
    try:
        value = json.loads(trace.response_preview)
    except json.JSONDecodeError:
        from promptops import tracking

        full = tracking.get_trace(trace.trace_id)
        value = full.root_outputs if full is not None else None
    return value if isinstance(value, dict) else None


def _truth(value: Any) -> Optional[bool]:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value >= 0.5
    if isinstance(value, str):
        text = value.strip().lower()
        return True if text in _TRUE else False if text in _FALSE else None
    return None


def _number(text: Optional[str]) -> Optional[float]:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _duration_s(trace: TraceRecord) -> Optional[float]:
    return trace.execution_time_ms / 1000 if trace.execution_time_ms is not None else None


def _since(since: Optional[str | date | datetime]) -> tuple[Optional[int], Optional[str]]:
    if since is None:
        return None, None
    if isinstance(since, str):
        try:
            since = datetime.fromisoformat(since)
        except ValueError:
            raise PromptopsError(f"--since {since!r} is not a date: use YYYY-MM-DD or an ISO date-time") from None
    if not isinstance(since, datetime):
        since = datetime(since.year, since.month, since.day)
    if since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    return int(since.timestamp() * 1000), since.isoformat(timespec="seconds")


def _version_order(label: str) -> tuple[int, str]:
    return (int(label[1:]), label) if label[:1] == "v" and label[1:].isdigit() else (10 ** 9, label)
