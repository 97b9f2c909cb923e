"""MLflow assessments on traces: what a person said about an answer (feedback) and what it should have been (expectations)."""

from __future__ import annotations

from typing import Any, Optional

from promptops._secrets import redact_data
from promptops.errors import TrackingError
from promptops.tracking._store import _first_line, _mlflow


def log_feedback(trace_id: str, *, correct: Optional[bool] = None, expected: Optional[dict[str, Any]] = None,
                 source: str = "promptops") -> None:
    """Feedback `correct` and one expectation per output field on the trace, from a human `source`."""
    mlflow = _mlflow()
    from mlflow.entities import AssessmentSource, AssessmentSourceType

    who = AssessmentSource(source_type=AssessmentSourceType.HUMAN, source_id=source)
    try:
        if correct is not None:
            mlflow.log_feedback(trace_id=trace_id, name="correct", value=bool(correct), source=who)
        for name, value in (expected or {}).items():
            mlflow.log_expectation(trace_id=trace_id, name=name, value=redact_data(value), source=who)
    except Exception as exc:
        raise TrackingError(f"cannot record feedback on trace {trace_id}: {_first_line(exc)}") from None


def assessments(trace: Any) -> list[Any]:
    """The trace's valid (not overridden) assessments, oldest first; among equal times, in stored order."""
    valid = [a for a in (trace.info.assessments or ()) if getattr(a, "valid", True) is not False]
    return sorted(valid, key=lambda a: a.create_time_ms or 0)


def expectations(trace: Any) -> dict[str, Any]:
    """The newest valid expectation per name."""
    return {a.name: a.expectation.value for a in assessments(trace) if a.expectation is not None}
