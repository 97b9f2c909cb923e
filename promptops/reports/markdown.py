"""Markdown reports: `compare`'s comparison, `check`'s pull-request comment, `ab-report`'s arms.

The domain objects (`Comparison`, `CheckReport`, `ABReport`) hold the figures; this module words them.
"""

from __future__ import annotations

from typing import Any, Optional

from promptops import _format as md
from promptops.evaluation import ChangedExample, Comparison, normalize
from promptops.runtime import STATUSES, ABReport
from promptops.versioning import CheckReport, PromptCheck


def comparison_markdown(comparison: Comparison, *, heading: Optional[str] = "###", a_name: str = "A", b_name: str = "B") -> str:
    """The comparison as markdown: a table of both sides and the deltas, the tests, the examples that flipped."""
    lines = []
    if heading:
        lines += [f"{heading} {comparison.prompt}: {comparison.a.label} → {comparison.b.label}", ""]
    lines += [f"{comparison.n} `{comparison.split}` examples of `{comparison.dataset}`, model `{comparison.model}`.", "",
              f"| | {a_name}: {comparison.a.label} | {b_name}: {comparison.b.label} | {b_name} − {a_name} | {comparison.difference.confidence:.0%} CI |",
              "|---|---|---|---|---|"]
    primary = comparison.primary_metric
    lines.append(f"| **{primary}** (primary) | {comparison.a_score:.3f} | {comparison.b_score:.3f} | **{md.signed(comparison.difference.estimate)}** | "
                 f"{md.bounds(comparison.difference)} |")
    if primary != "accuracy" and "accuracy" in comparison.a_result.metrics and "accuracy" in comparison.b_result.metrics:
        name = "exact match (all fields)" if comparison.fields else "accuracy"
        lines.append(f"| {name} | {comparison.a_result.metrics['accuracy']:.3f} | {comparison.b_result.metrics['accuracy']:.3f} | "
                     f"{md.signed(comparison.exact_match.estimate)} | {md.bounds(comparison.exact_match)} |")
    for delta in comparison.fields:
        lines.append(f"| F1 `{delta.field}` | {delta.a_f1:.3f} | {delta.b_f1:.3f} | {md.signed(delta.difference.estimate)} | "
                     f"{md.bounds(delta.difference)} |")
    cost_delta = ""
    if comparison.a_cost_usd is not None and comparison.b_cost_usd is not None:
        share = md.share(comparison.b_cost_usd, comparison.a_cost_usd)
        cost_delta = md.signed(comparison.b_cost_usd - comparison.a_cost_usd, 6, prefix="$") + (f" ({share})" if share else "")
    cost_bounds = f"per example {md.bounds(comparison.cost_per_example_usd, 8, prefix='$')}" if comparison.cost_per_example_usd else ""
    lines.append(f"| cost | {md.usd(comparison.a_cost_usd)} | {md.usd(comparison.b_cost_usd)} | {cost_delta} | {cost_bounds} |")
    lines.append(f"| latency p50 | {md.seconds(comparison.a_latency_p50_s)} | {md.seconds(comparison.b_latency_p50_s)} | "
                 f"{md.signed(comparison.b_latency_p50_s - comparison.a_latency_p50_s, suffix=' s')} | "
                 f"mean per example {md.bounds(comparison.latency_per_example_s, suffix=' s')} |")
    lines.append(f"| latency p95 | {md.seconds(comparison.a_latency_p95_s)} | {md.seconds(comparison.b_latency_p95_s)} | "
                 f"{md.signed(comparison.b_latency_p95_s - comparison.a_latency_p95_s, suffix=' s')} | |")
    fixed = sum(c.b_correct for c in comparison.changed)
    broken = len(comparison.changed) - fixed
    right = {"judge": " (right = the judge's pass)", "similarity": " (right = similarity at or above its threshold)"}.get(
        comparison.metric, " (right = every output field right)" if comparison.fields else "")
    lines += ["", f"McNemar's exact test on right/wrong per example{right}: {b_name} fixed {fixed} that {a_name} got wrong "
              f"and broke {broken} that {a_name} got right; {md.p_equals(comparison.mcnemar.p_value)} "
              f"({md.p_equals(comparison.mcnemar.mid_p_value, 'mid-p')}). "
              f"Intervals: paired bootstrap over examples, {comparison.difference.resamples:,} resamples, seed {comparison.seed}."]
    if comparison.changed:
        shown = sorted(comparison.changed, key=lambda c: c.b_correct)[:20]
        lines += ["", f"<details><summary>{broken} example{'s' if broken != 1 else ''} broken, {fixed} fixed</summary>", "",
                  f"| example | | input | expected | {a_name} | {b_name} |", "|---|---|---|---|---|---|"]
        for change in shown:
            keys = _differing(change)
            lines.append(f"| {change.source} | {'fixed' if change.b_correct else 'broken'} | {md.cell(_values(change.inputs))} | "
                         f"{md.cell(_values(change.expected, keys), 40)} | {md.cell(_values(change.a_predicted, keys), 40)} | "
                         f"{md.cell(_values(change.b_predicted, keys), 40)} |")
        if len(comparison.changed) > len(shown):
            lines.append(f"| … {len(comparison.changed) - len(shown)} more | | | | | |")
        lines += ["", "</details>"]
    if comparison.run_id:
        lines += ["", f"MLflow run `{comparison.run_id}` in experiment `{comparison.prompt}`."]
    return "\n".join(lines) + "\n"


def check_markdown(report: CheckReport) -> str:
    """The pull-request comment: a verdict line, one table row per prompt, then the details of each."""
    failed = [c for c in report.checks if not c.passed]
    count = len(report.checks)
    if not count:
        title = "✅ no prompt changed"
    elif failed:
        title = f"❌ {len(failed)} of {count} changed prompt{'s' if count != 1 else ''} failed"
    else:
        title = f"✅ {'the changed prompt passes' if count == 1 else f'all {count} changed prompts pass'}"
    lines = [f"## promptops check: {title}", "",
             f"Changes since `{report.base}` (`{report.base_commit[:8]}`). Each changed prompt is evaluated on its `{report.split}` "
             "split beside its production version (before any promotion, its version at the base) on the same examples; "
             "it fails by the gate `promote` applies (its file's `eval.gate`; by default `non_inferior`: the 95% interval "
             "of the difference must not reach below minus the tolerance, 0.02"
             + (f"; here every tolerance is {report.tolerance:g}" if report.tolerance is not None else "")
             + "), or below its file's `eval.threshold`."]
    if report.checks:
        lines += ["", "| prompt | metric | before | after | change (95% CI) | McNemar p | cost | latency p50 | verdict |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [_check_row(check) for check in report.checks]
    for check in report.checks:
        lines += ["", *_check_details(check)]
    if report.removed:
        lines += ["", f"Removed, not evaluated: {', '.join(f'`{name}`' for name in report.removed)}."]
    return "\n".join(lines) + "\n"


def _check_row(check: PromptCheck) -> str:
    verdict = "✅ pass" if check.passed else ("❌ error" if check.score is None else "❌ fail")
    comparison = check.comparison
    if check.score is None:
        return f"| `{check.prompt}` | | | | | | | | {verdict} |"
    if comparison is None:
        after = f"{check.score:.3f}"
        return f"| `{check.prompt}` | {check.metric} | {'new' if check.new else 'not compared'} | {after} | | | {md.usd(check.result.cost_usd) if check.result else ''} | | {verdict} |"
    cost = md.share(comparison.b_cost_usd, comparison.a_cost_usd) or md.usd(comparison.b_cost_usd)
    latency = md.signed(comparison.b_latency_p50_s - comparison.a_latency_p50_s, suffix=" s")
    change = f"**{md.signed(comparison.difference.estimate)}** ({md.bounds(comparison.difference)})"
    return (f"| `{check.prompt}` | {check.metric} | {comparison.a_score:.3f} ({check.baseline}) | {comparison.b_score:.3f} | "
            f"{change} | {md.p_value(comparison.mcnemar.p_value)} | {cost} | {latency} | {verdict} |")


def _check_details(check: PromptCheck) -> list[str]:
    mark = "✅" if check.passed else "❌"
    lines = [f"### {mark} {check.prompt}", ""]
    if check.changed:
        lines.append(f"Changed: {', '.join(f'`{path}`' for path in check.changed)}.")
    if check.note:
        lines.append(check.note)
    if check.verdict is not None:
        lines.append(f"Gate: {check.verdict.line()}.")
    for reason in check.reasons:
        lines.append(f"- **{reason}**")
    if check.comparison is not None:
        comparison = check.comparison
        command = f"promptops compare {comparison.a.reference} {check.prompt} --split {comparison.split} --limit {comparison.n}"
        lines += ["", comparison_markdown(comparison, heading=None, a_name="before", b_name="after").rstrip(), "", f"Reproduce: `{command}`"]
    elif check.result is not None:
        result = check.result
        lines += ["", f"{check.metric} {result.score:.3f} on {result.n} `{result.split}` examples of `{result.dataset}`, "
                  f"model `{result.model}`, cost {md.usd(result.cost_usd)}, latency p50 {md.seconds(result.latency_p50_s)}."]
    return lines


def ab_markdown(report: ABReport) -> str:
    total = sum(arm.traces for arm in report.arms)
    since = f" since {report.since}" if report.since else ""
    lines = [f"## {report.prompt}: A/B report, {len(report.arms)} arm{'s' if len(report.arms) != 1 else ''}, "
             f"{total:,} routed request{'s' if total != 1 else ''}{since}", ""]
    if not report.arms:
        lines.append(f"No traced request of {report.prompt} carries an arm: serve it with "
                     f"`promptops.load(\"{report.prompt}\", split={{...}}, key=user_id)`.")
        return "\n".join(lines) + "\n"
    lines += ["| arm | requests | ok / refused / error / fallback / needs review | labeled | accuracy | cost per call | latency mean / p50 / p95 |",
              "|---|---|---|---|---|---|---|"]
    for arm in sorted(report.arms, key=lambda arm: arm.arm != report.reference):
        versions = f" {', '.join(arm.versions)}" if arm.versions else ""
        name = f"{arm.arm}{versions} (reference)" if arm.arm == report.reference else f"{arm.arm}{versions}"
        statuses = " / ".join(str(arm.statuses.get(status, 0)) for status in STATUSES)
        accuracy = f"{arm.accuracy:.3f} ({arm.correct}/{arm.labeled})" if arm.accuracy is not None else "no feedback"
        latency = " / ".join(md.seconds(value) for value in (arm.latency_mean_s, arm.latency_p50_s, arm.latency_p95_s))
        lines.append(f"| {name} | {arm.traces:,} | {statuses} | {arm.labeled:,} | {accuracy} | "
                     f"{md.usd(arm.cost_per_call_usd, 8)} | {latency} |")
    for comparison in report.comparisons:
        parts = []
        if comparison.accuracy is not None and comparison.accuracy_test is not None:
            parts.append(f"accuracy {md.interval(comparison.accuracy)}, Fisher's exact {md.p_equals(comparison.accuracy_test.p_value)}")
        else:
            parts.append("accuracy not comparable (an arm has no feedback)")
        if comparison.cost_per_call_usd is not None:
            parts.append(f"cost per call {md.interval(comparison.cost_per_call_usd, 8, prefix='$')}")
        if comparison.latency_s is not None:
            parts.append(f"latency {md.interval(comparison.latency_s, suffix=' s')}")
        lines += ["", f"**{comparison.arm} vs {comparison.reference}**: " + "; ".join(parts) + "."]
    if report.comparisons:
        first = report.comparisons[0]
        interval = first.accuracy or first.latency_s or first.cost_per_call_usd
        if interval is not None:
            lines += ["", f"Intervals: {interval.confidence:.0%} bootstrap percentile intervals of the difference, each arm "
                      f"resampled on its own ({interval.resamples:,} resamples). Accuracy counts requests with a `correct` "
                      "feedback or expectations for output fields."]
    if report.unrouted:
        one = report.unrouted == 1
        lines += ["", f"{report.unrouted:,} other traced request{'' if one else 's'} of {report.prompt} "
                  f"{'carries' if one else 'carry'} no arm (not served through a split) and {'is' if one else 'are'} not counted."]
    return "\n".join(lines) + "\n"


def _differing(change: ChangedExample) -> list[str]:
    """The output fields the two answers disagree on: what a reader of a flipped example needs to see."""
    a, b = change.a_predicted or {}, change.b_predicted or {}
    keys = [key for key in change.expected if normalize(a.get(key)) != normalize(b.get(key))]
    return keys or list(change.expected)


def _values(values: Optional[dict[str, Any]], keys: Optional[list[str]] = None) -> Any:
    """One field as its bare value (a label reads as a label); several as `field: value; ...`, empty ones left out."""
    if values is None:
        return "no answer"
    if len(values) == 1:
        return next(iter(values.values()))
    shown = {key: values.get(key) for key in (keys or values)}
    return "; ".join(f"{key}: {md.cell(value)}" for key, value in shown.items() if keys or value not in (None, ""))
