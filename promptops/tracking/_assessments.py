"""MLflow assessments on traces: what a person said about an answer (feedback) and what it should have been (expectations).

Written with `log_feedback`; read back as `TraceAssessment` records on a `TraceRecord`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

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


@dataclass(frozen=True)
class TraceAssessment:
    """One valid (not overridden) assessment on a trace: feedback on the answer, or an expectation of what it should have been."""

    name: str  # "correct" for feedback; an output field's name for an expectation
    kind: str  # "feedback" or "expectation"
    value: Any  # None for feedback that could not be given (`error`)
    source_type: str  # "HUMAN", "LLM_JUDGE", "CODE"
    source_id: Optional[str]
    created_ms: int  # milliseconds since the epoch
    error: Optional[str] = None  # why the feedback has no value (e.g. a judge that failed)


def trace_assessments(mlflow_assessments: Optional[Iterable[Any]]) -> tuple[TraceAssessment, ...]:
    """MLflow's feedback and expectations of a trace as records: the valid ones, oldest first (among equal times, in stored order)."""
    valid = sorted((a for a in (mlflow_assessments or ()) if getattr(a, "valid", True) is not False),
                   key=lambda a: a.create_time_ms or 0)
    records = []
    for a in valid:
        if a.feedback is not None:
            error = a.feedback.error
            records.append(TraceAssessment(a.name, "feedback", a.feedback.value, str(a.source.source_type), a.source.source_id,
                                           a.create_time_ms or 0, (error.error_message or error.error_code) if error else None))
        elif a.expectation is not None:
            records.append(TraceAssessment(a.name, "expectation", a.expectation.value, str(a.source.source_type),
                                           a.source.source_id, a.create_time_ms or 0))
    return tuple(records)
