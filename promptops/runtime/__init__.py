"""The production runtime: a loaded prompt guarded (checks, retries, fallbacks, caps, rate limits, circuit breakers, NeedsReview), traced as one MLflow trace per request, replayable, fed back into its eval set, and split between versions for A/B tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from promptops._lazy import lazy_exports

if TYPE_CHECKING:
    from promptops.runtime._ab import ABReport, Outcome, STATUSES, SplitError, ab_report, check_split, choose_arm, summarize_outcomes
    from promptops.runtime._feedback import FeedbackAdded, add_failed, add_feedback, record_feedback
    from promptops.runtime._guarded import Answer, GuardedProgram, NeedsReview
    from promptops.runtime._replay import ReplayResult, replay
    from promptops.runtime._tracing import MAX_TRACED_CHARS, TraceSummary, flush_traces, scrub, search_traces
    from promptops.runtime._run import RunResult, run_request

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "_ab": "ABReport Outcome STATUSES SplitError ab_report check_split choose_arm summarize_outcomes",
    "_feedback": "FeedbackAdded add_failed add_feedback record_feedback",
    "_guarded": "Answer GuardedProgram NeedsReview",
    "_replay": "ReplayResult replay",
    "_tracing": "MAX_TRACED_CHARS TraceSummary flush_traces scrub search_traces",
    "_run": "RunResult run_request",
})
