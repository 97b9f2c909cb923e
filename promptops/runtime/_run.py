"""One request, as `promptops run` makes it: a served version within its guardrails, its outputs, and what
the person running it needs to see (confidence, trace id, tool calls, an answer held for review)."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Optional

from promptops.artifact import errors_placed_in, resolve_prompt_path, written_values
from promptops.errors import GuardrailError
from promptops.program import Approver, prediction_values
from promptops.runtime._guarded import GuardedProgram, NeedsReview
from promptops.runtime._tracing import flush_traces
from promptops.versioning import served_version


@dataclass(frozen=True)
class RunResult:
    """The outputs of one request; `review` is set when the answer is held for a person (below min_confidence)."""

    prompt: str
    outputs: dict[str, Any]
    review: Optional[NeedsReview]
    confidence: Optional[dict[str, float]]  # label probability per field, where the model reports it
    trace_id: Optional[str]
    tool_calls: Optional[list[dict[str, Any]]]  # an agent's calls, in order; None for a single-call prompt

    def summary(self) -> dict[str, Any]:
        """The outputs as one JSON object, with `_trace_id`, `_confidence`, `_tool_calls` and `_needs_review` beside them."""
        extra: dict[str, Any] = {"_trace_id": self.trace_id} if self.trace_id else {}
        if self.confidence:
            extra["_confidence"] = self.confidence
        if self.tool_calls is not None:
            extra["_tool_calls"] = self.tool_calls
        if self.review:
            extra["_needs_review"] = {"reason": self.review.reason, "least_sure_field": self.review.least_sure_field,
                                      "confidence": self.review.confidence, "threshold": self.review.threshold}
        return {**self.outputs, **extra}


def run_request(
    reference: str,
    inputs: dict[str, Any],
    *,
    model: Optional[str] = None,
    key: Optional[str] = None,
    trace: bool = True,
    approve: Optional[Approver] = None,
    on_tool_calls: Optional[Callable[[list[dict[str, Any]]], None]] = None,
) -> RunResult:
    """Serve `reference` (`NAME@production`, `@vN`, ...) once on `inputs`, trace written before it returns.

    A refused or failed request raises `GuardrailError` naming its trace; `on_tool_calls` sees an agent's
    calls whether the request succeeded or not.
    """
    served = served_version(reference)
    program = GuardedProgram(served, model=model, key=key, trace=trace, approve=approve)
    task = None
    # The working file's model string or parameters that do not resolve are reported at their line.
    placing = nullcontext() if "@" in reference else \
        errors_placed_in(resolve_prompt_path(reference), written_values(served.prompt, model=not model, metric=False, data=False))
    try:
        with placing:
            prediction = program(**inputs)
    except GuardrailError as exc:
        if exc.trace_id:  # one line still, with what `promptops replay` and `feedback add` need
            raise GuardrailError(f"{exc} (trace {exc.trace_id})") from None
        raise
    finally:
        if trace:
            flush_traces()
        task = program.last_record.task if program.last_record else None
        if task is not None and on_tool_calls is not None:
            on_tool_calls([call.as_dict() for call in task.calls])
    review = prediction if isinstance(prediction, NeedsReview) else None
    answer = program.last_record.answer if program.last_record else None
    return RunResult(
        prompt=program.prompt.name,
        outputs=review.outputs if review else prediction_values(program.prompt, prediction),
        review=review,
        confidence=answer.confidence_by_field if answer else None,
        trace_id=program.last_trace_id,
        tool_calls=[call.as_dict() for call in task.calls] if task is not None else None,
    )
