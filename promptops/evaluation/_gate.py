"""The one gate: may a candidate version replace the version it is measured against?

`promote`, `check` and the optimizer's winner ask it the same way. Both versions answer the
same examples of the gate split (committed data only), the pairs give the difference of the
primary metric with its bootstrap interval and, on right/wrong per example, McNemar's exact
test (`promptops.evaluation._compare`); a rule decides on those numbers. Every verdict carries the
difference, the interval, p, n and the rule, so a decision can be read back and reproduced.

The rules (`eval: {gate: {rule: ..., tolerance: ...}}` in the prompt file):

- `non_inferior` (the default): the candidate passes when the interval's lower bound is at least
  `-tolerance`, i.e. the data show, at the interval's confidence, that it is not worse by more
  than the tolerance.
- `not_worse`: the point rule: the candidate's score is at least the other's minus the tolerance.
- `superior`: the candidate passes when the interval's lower bound is above 0, i.e. the data show
  it is better (the tolerance plays no part): for a change whose whole point is to improve.

A refusal says how many examples the observed difference would need to pass: an interval narrows
as 1/√n, so at the same difference and spread, n·(half-width / (difference − bound))² rows would
put its lower bound on the bound (an estimate, not a promise: the difference itself may move).

Why `non_inferior` by default: eval splits are small. On 40 rows one answer is 2.5 points, so a
point comparison lets a regression through whenever noise favours it, and an optimizer that
picks the best of 20 trials on dev is exactly such noise. Non-inferiority asks the data to show
the candidate is not worse; a change that answers identically always passes (its interval is
[0, 0]), a change that breaks some answers and fixes others passes only when the fixes
outweigh the breaks clearly enough for the sample size. `--force --reason` overrides it for a
person who knows better, and the reason goes into the audit trail.

The tolerance default (0.02) is two points of accuracy or F1: small enough that a real loss is
caught, large enough that a change with no effect on a large split is not held back by the
bootstrap's own spread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from promptops import _format as md
from promptops.artifact import GateSpec, Prompt
from promptops.errors import PromptopsError

if TYPE_CHECKING:
    from promptops.evaluation._compare import Comparison
    from promptops.evaluation._run import EvalResult
    from promptops.evaluation._stats import Interval

RULES = ("non_inferior", "not_worse", "superior")


def rule_for(prompt: Prompt, *, rule: Optional[str] = None, tolerance: Optional[float] = None) -> GateSpec:
    """The prompt file's gate, with the command line's overrides."""
    spec = prompt.eval.gate or GateSpec()
    changes: dict[str, Any] = {}
    if rule is not None:
        if rule not in RULES:
            raise PromptopsError(f"unknown gate rule {rule!r}: use one of {', '.join(RULES)}")
        changes["rule"] = rule
    if tolerance is not None:
        if not 0 <= tolerance <= 1:
            raise PromptopsError(f"tolerance {tolerance:g} must be between 0 and 1, in units of the primary metric")
        changes["tolerance"] = tolerance
    return spec.model_copy(update=changes) if changes else spec


@dataclass(frozen=True)
class Verdict:
    """What the gate decided and every number it decided on; differences are candidate minus baseline."""

    passed: bool
    rule: str
    tolerance: float
    metric: str
    n: int
    candidate_label: str
    baseline_label: Optional[str]  # None: nothing to compare with (a first promotion, a new prompt)
    candidate_score: float
    baseline_score: Optional[float]
    difference: "Optional[Interval]"
    p_value: Optional[float]  # McNemar's exact test on every-field-right per example
    threshold: Optional[float]
    candidate_cost_usd: Optional[float]
    baseline_cost_usd: Optional[float]
    max_cost_usd: Optional[float]
    reasons: tuple[str, ...]

    @property
    def decided_by(self) -> str:
        return self.rule if self.rule == "superior" else f"{self.rule} (tolerance {self.tolerance:g})"

    def line(self) -> str:
        """One line with every number: `accuracy 0.450 vs 0.475 (production v1): -0.025 (95% CI ...), McNemar p = 1, n = 40; ...`"""
        if self.baseline_score is None or self.difference is None:
            numbers = f"{self.metric} {self.candidate_score:.3f} on n = {self.n}, nothing to compare with"
        else:
            numbers = (f"{self.metric} {self.candidate_score:.3f} vs {self.baseline_score:.3f} ({self.baseline_label}): "
                       f"{md.interval(self.difference)}, McNemar {md.p_equals(self.p_value or 1.0)}, n = {self.n}")
        outcome = "passes" if self.passed else "fails: " + "; ".join(self.reasons)
        return f"{numbers}; rule {self.decided_by} {outcome}"

    def summary(self) -> dict[str, Any]:
        """Flat and JSON-ready: for `--json`, the audit entry and the MLflow run."""
        difference = self.difference
        return {
            "passed": self.passed, "rule": self.rule, "tolerance": self.tolerance, "metric": self.metric, "n": self.n,
            "candidate": self.candidate_label, "baseline": self.baseline_label,
            "candidate_score": _round(self.candidate_score), "baseline_score": _round(self.baseline_score),
            "difference": _round(difference.estimate) if difference else None,
            "ci_low": _round(difference.low) if difference else None, "ci_high": _round(difference.high) if difference else None,
            "confidence": difference.confidence if difference else None, "p_value": _round(self.p_value),
            "threshold": self.threshold, "candidate_cost_usd": _round(self.candidate_cost_usd),
            "baseline_cost_usd": _round(self.baseline_cost_usd), "max_cost_usd": self.max_cost_usd, "reasons": list(self.reasons),
        }


def gate_verdict(
    spec: GateSpec,
    *,
    comparison: "Optional[Comparison]" = None,
    candidate: "Optional[EvalResult]" = None,
    candidate_label: str = "candidate",
    threshold: Optional[float] = None,
    max_cost_usd: Optional[float] = None,
) -> Verdict:
    """Apply the rule to a paired comparison (baseline = A, candidate = B), or to the candidate alone."""
    if comparison is None and candidate is None:
        raise ValueError("judge needs a comparison or the candidate's eval")
    result = comparison.b_result if comparison is not None else candidate
    reasons = []
    difference = comparison.difference if comparison is not None else None
    if comparison is not None:
        if spec.rule == "non_inferior" and difference.low < -spec.tolerance - 1e-12:
            reasons.append(f"the interval's lower bound {md.signed(difference.low)} is below -{spec.tolerance:g}: "
                           f"these {comparison.n} examples do not show it is not worse"
                           + _rows_needed(difference, comparison.n, -spec.tolerance))
        elif spec.rule == "superior" and difference.low <= 1e-12:
            reasons.append(f"the interval's lower bound {md.signed(difference.low)} is not above 0: "
                           f"these {comparison.n} examples do not show it is better" + _rows_needed(difference, comparison.n, 0.0))
        elif spec.rule == "not_worse" and comparison.b_score < comparison.a_score - spec.tolerance - 1e-12:
            reasons.append(f"{comparison.b_score:.3f} is below {comparison.a_score:.3f} by more than {spec.tolerance:g}")
    if threshold is not None and result.score < threshold:
        reasons.append(f"{result.metric} {result.score:.3f} is below the threshold {threshold:g}")
    if max_cost_usd is not None and result.cost_usd is not None and result.cost_usd > max_cost_usd:
        reasons.append(f"cost {md.usd(result.cost_usd)} is above the limit {md.usd(max_cost_usd)}")
    return Verdict(
        passed=not reasons, rule=spec.rule, tolerance=spec.tolerance, metric=result.metric, n=result.n,
        candidate_label=comparison.b.label if comparison is not None else candidate_label,
        baseline_label=comparison.a.label if comparison is not None else None,
        candidate_score=result.score, baseline_score=comparison.a_score if comparison is not None else None,
        difference=difference, p_value=comparison.mcnemar.p_value if comparison is not None else None,
        threshold=threshold, candidate_cost_usd=result.cost_usd,
        baseline_cost_usd=comparison.a_cost_usd if comparison is not None else None,
        max_cost_usd=max_cost_usd, reasons=tuple(reasons),
    )


def rows_needed(difference: "Interval", n: int, bound: float) -> Optional[int]:
    """About how many paired examples would put the interval's lower bound on `bound` at this difference and spread;
    None when no number would (the difference itself is at or below the bound) or the interval has no width."""
    half_width = difference.estimate - difference.low
    margin = difference.estimate - bound
    if margin <= 1e-12 or half_width <= 1e-12 or n <= 0:
        return None
    return max(n + 1, math.ceil(n * (half_width / margin) ** 2))


def _rows_needed(difference: "Interval", n: int, bound: float) -> str:
    needed = rows_needed(difference, n, bound)
    if needed is None:
        return f"; at a difference of {md.signed(difference.estimate)} no number of examples would"
    return f"; at this difference about {needed} examples would (the interval narrows as 1/√n)"


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else float(f"{value:.6g}")
