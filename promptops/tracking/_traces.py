"""MLflow traces: the root span of a served request, MLflow's DSPy spans under it, and reading traces back as
`TraceRecord`s, so no other package reads MLflow's `Trace` or writes its filter strings.

What a trace says (tags, status, attributes) is the runtime's business (`promptops.runtime._tracing`);
this module only knows how MLflow stores it, and the two tags a search needs: the prompt's name and the status.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

from promptops._secrets import redact_data
from promptops.errors import TrackingError
from promptops.tracking._assessments import TraceAssessment, trace_assessments
from promptops.tracking._store import _experiment, _first_line, _mlflow, display_uri, tracking_uri

_EXPERIMENTS: dict[tuple[str, str], str] = {}
_EXPERIMENTS_LOCK = threading.Lock()
_REQUEST_SPANS: Any = None
# Trace id → the function every span of that request passes its inputs and outputs through before export
# (MLflow's DSPy spans included); traces promptops did not start are left alone.
_SCRUBBERS: dict[str, Callable[[Any], Any]] = {}


def experiment_id(prompt_name: str) -> str:
    """The prompt's MLflow experiment (created if missing), looked up once per process and store."""
    key = (tracking_uri(), prompt_name)
    with _EXPERIMENTS_LOCK:
        if key not in _EXPERIMENTS:
            _EXPERIMENTS[key] = _experiment(_mlflow(), prompt_name)
        return _EXPERIMENTS[key]


class RequestSpan:
    """The root span of one traced request, open while the request runs."""

    def __init__(self, span: Any, mlflow: Any):
        self._span, self._mlflow = span, mlflow

    @property
    def trace_id(self) -> str:
        return self._span.trace_id

    def finish(
        self,
        *,
        events: list[tuple[str, dict[str, Any]]],
        outputs: Optional[dict[str, Any]],
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        attributes: dict[str, Any],
        tags: dict[str, str],
        model_id: Optional[str] = None,
    ) -> None:
        """Record how the request went: events in order, outputs, usage and cost, attributes, then the trace's tags."""
        from mlflow.entities import SpanEvent
        from mlflow.tracing.constant import SpanAttributeKey

        for name, values in events:
            self._span.add_event(SpanEvent(name, attributes={key: _attribute(value) for key, value in redact_data(values).items()}))
        if outputs is not None:
            self._span.set_outputs(outputs)
        # MLflow's own keys, so the trace list shows tokens and cost like any traced LLM call.
        self._span.set_attribute(SpanAttributeKey.CHAT_USAGE, {
            "input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens})
        self._span.set_attribute(SpanAttributeKey.LLM_COST, {"total_cost": cost_usd})
        self._span.set_attributes(redact_data(attributes))
        # model_id: an agent version's LoggedModel
        self._mlflow.update_current_trace(tags=redact_data(tags), model_id=model_id)


@contextmanager
def request_span(prompt_name: str, inputs: dict[str, Any], scrub: Callable[[Any], Any] = lambda value: value) -> Iterator[RequestSpan]:
    """A new trace in the prompt's experiment whose root span is open for the block; written even when the block raises.

    The inputs and outputs of every span of the trace, the root's and DSPy's, pass through `scrub` when the span ends;
    every other attribute, event (an exception's message and stack trace) and status message, through the secret
    scrubber.
    """
    from mlflow.entities import SpanType
    from mlflow.entities.trace_location import MlflowExperimentLocation

    mlflow = _mlflow()
    _install_scrubber(mlflow)
    destination = MlflowExperimentLocation(experiment_id(prompt_name))
    trace_id = None
    try:
        with mlflow.start_span(name=prompt_name, span_type=SpanType.CHAIN, trace_destination=destination) as span:
            trace_id = span.trace_id
            _SCRUBBERS[trace_id] = scrub
            span.set_inputs(scrub(inputs))
            yield RequestSpan(span, mlflow)
    finally:
        _SCRUBBERS.pop(trace_id, None)


def _install_scrubber(mlflow: Any) -> None:
    """Add `_scrub_span` to MLflow's span processors once per process, after any the application configured."""
    from mlflow.tracing.config import get_config

    processors = get_config().span_processors
    if _scrub_span not in processors:
        mlflow.tracing.configure(span_processors=[*processors, _scrub_span])


def _scrub_span(span: Any) -> None:
    """What a span of a promptops trace keeps: its inputs and outputs through the trace's `scrub`, and no secret in
    its other attributes (DSPy's LM settings), its events (an exception's message and stack trace) or its status."""
    from mlflow.entities import SpanStatus
    from mlflow.tracing.constant import SpanAttributeKey

    scrub = _SCRUBBERS.get(span.trace_id)
    if scrub is None:
        return
    if span.inputs is not None:
        span.set_inputs(scrub(span.inputs))
    if span.outputs is not None:
        span.set_outputs(scrub(span.outputs))
    for key, value in span.attributes.items():
        if key not in (SpanAttributeKey.INPUTS, SpanAttributeKey.OUTPUTS) and (clean := redact_data(value)) != value:
            span.set_attribute(key, clean)
    _scrub_events(span)
    status = span.status
    if status.description and (description := redact_data(status.description)) != status.description:
        span.set_status(SpanStatus(status.status_code, description=description))


def _scrub_events(span: Any) -> None:
    """Events are written once and MLflow's `LiveSpan` has no call to change one, so a span whose events hold a secret
    gets them again, scrubbed, in OpenTelemetry's span (an exception's event is added by MLflow as the span fails)."""
    otel_span = span._span
    if not hasattr(otel_span, "_events"):  # not OpenTelemetry's SDK span (a span that records nothing)
        return
    events = list(otel_span.events)
    cleaned = [redact_data(dict(event.attributes or {})) for event in events]
    if all(clean == dict(event.attributes or {}) for clean, event in zip(cleaned, events)):
        return
    from opentelemetry.sdk.trace import Event
    from opentelemetry.sdk.util import BoundedList

    otel_span._events = BoundedList.from_seq(otel_span._events._dq.maxlen, [
        Event(event.name, clean, event.timestamp) for event, clean in zip(events, cleaned)])


def with_dspy_spans(callbacks: list[Any]) -> list[Any]:
    """DSPy's callbacks plus MLflow's DSPy callback for one request, unless `mlflow.dspy.autolog()` already added it.

    MLflow's callback records spans only while DSPy autologging is on for the whole process,
    which would also trace every eval and optimization call. The subclass drops that check
    (MLflow's own `skip_if_trace_disabled` wrapper), so spans are recorded inside requests only.
    """
    global _REQUEST_SPANS
    from mlflow.dspy.callback import MlflowCallback

    if any(isinstance(callback, MlflowCallback) for callback in callbacks):
        return list(callbacks)
    if _REQUEST_SPANS is None:
        spans = type("RequestSpans", (MlflowCallback,), {"__doc__": "MLflow's DSPy spans, for one guarded request."})
        for name, member in vars(MlflowCallback).items():
            if name.startswith("on_") and callable(getattr(member, "__wrapped__", None)):
                setattr(spans, name, member.__wrapped__)
        _REQUEST_SPANS = spans
    return [*callbacks, _REQUEST_SPANS()]


def flush_traces() -> None:
    """Write traces still queued for asynchronous export (a short-lived CLI process must wait for them)."""
    import mlflow

    try:
        mlflow.flush_trace_async_logging()
    except Exception:  # nothing queued, or the exporter is synchronous
        pass


# The two tags a search reads; what the others say is the runtime's business.
_PROMPT_TAG = "promptops.prompt"
_STATUS_TAG = "promptops.status"


@dataclass(frozen=True)
class TraceRecord:
    """One traced request as promptops reads it back: plain values, not MLflow's `Trace`.

    From `search_traces` the root span is not read (`root_inputs`, `root_outputs`, `root_attributes` are None);
    `get_trace` reads the trace whole.
    """

    trace_id: str
    request_time_ms: int  # when the request started, in milliseconds since the epoch
    execution_time_ms: Optional[int]  # how long it ran; None while in progress
    state: str  # MLflow's: "OK", "ERROR", "IN_PROGRESS"; promptops' own status is the `promptops.status` tag
    tags: dict[str, str]
    request_preview: str  # the root span's inputs as JSON, cut short by MLflow; "" when none
    response_preview: str  # the root span's outputs likewise
    assessments: tuple[TraceAssessment, ...] = ()  # valid feedback and expectations, oldest first
    root_inputs: Optional[dict[str, Any]] = None  # the request's inputs
    root_outputs: Any = None  # the whole response (the preview may be cut)
    root_attributes: Optional[dict[str, Any]] = None  # promptops' and MLflow's: tool calls, sizes, usage

    def expectations(self) -> dict[str, Any]:
        """The newest valid expectation per name (an output field)."""
        return {a.name: a.value for a in self.assessments if a.kind == "expectation"}


def search_traces(
    prompt_name: str,
    *,
    tags: Optional[Mapping[str, str]] = None,
    exclude_statuses: Iterable[str] = (),
    since_ms: Optional[int] = None,
    limit: Optional[int] = None,
    newest_first: bool = False,
) -> list[TraceRecord]:
    """The traced requests of the prompt (tag `promptops.prompt` = its name) in its experiment, without their spans.

    Only those whose `tags` have exactly the values given, whose `promptops.status` is none of `exclude_statuses`
    and that started at or after `since_ms` (milliseconds since the epoch); at most `limit`, oldest or newest first.
    """
    conditions = [(_PROMPT_TAG, "=", prompt_name), *((key, "=", value) for key, value in (tags or {}).items()),
                  *((_STATUS_TAG, "!=", status) for status in exclude_statuses)]
    filter_string, exact = _trace_filter(conditions, since_ms=since_ms)
    mlflow = _mlflow()
    if mlflow.get_experiment_by_name(prompt_name) is None:
        return []
    try:
        found = mlflow.search_traces(locations=[experiment_id(prompt_name)], filter_string=filter_string,
                                     max_results=limit if exact else None,
                                     order_by=["timestamp_ms DESC"] if newest_first else None, return_type="list",
                                     include_spans=False, flush=True)
    except Exception as exc:
        raise TrackingError(f"cannot search traces of {prompt_name!r} in MLflow at {display_uri()}: {_first_line(exc)}") from None
    # MLflow's filter said the same unless a value could not be written in it (or the store compares without case).
    records = [record for record in map(_record, found)
               if all(_holds(record.tags.get(key), op, value) for key, op, value in conditions)]
    return records[:limit] if limit is not None else records


def _trace_filter(conditions: Iterable[tuple[str, str, str]], *, since_ms: Optional[int] = None) -> tuple[str, bool]:
    """MLflow's filter string for tag conditions (key, "=" or "!=", value) and a start time, and whether it says all of them.

    MLflow's parser takes a quoted value as written, with no escapes: a value is put in single quotes, or in double
    quotes when it holds a single quote. A value holding both cannot be written; its condition is left out (the
    caller checks it on the records), so the search may be wider than asked, never narrower.
    """
    clauses, exact = [], True
    for key, op, value in conditions:
        if "`" in key or op not in ("=", "!="):
            raise ValueError(f"cannot search traces by tag {key!r} {op} ...")
        quote = "'" if "'" not in value else '"' if '"' not in value else None
        if quote is None:
            exact = False
            continue
        clauses.append(f"tags.`{key}` {op} {quote}{value}{quote}")
    if since_ms is not None:
        clauses.append(f"trace.timestamp_ms >= {int(since_ms)}")
    return " AND ".join(clauses), exact


def _holds(actual: Optional[str], op: str, value: str) -> bool:
    """A tag condition as MLflow reads it: a trace without the tag matches neither `=` nor `!=`."""
    return actual is not None and (actual == value if op == "=" else actual != value)


def get_trace(trace_id: str) -> Optional[TraceRecord]:
    """The whole trace, its root span's inputs, outputs and attributes included; None if the store has no such trace."""
    mlflow = _mlflow()
    try:
        trace = mlflow.get_trace(trace_id, silent=True, flush=True)
    except Exception:
        return None
    return _record(trace) if trace is not None else None


def _record(trace: Any) -> TraceRecord:
    info = trace.info
    root = next((span for span in trace.data.spans if span.parent_id is None), None)  # none without spans
    inputs = root.inputs if root is not None else None
    return TraceRecord(
        trace_id=info.trace_id, request_time_ms=info.request_time, execution_time_ms=info.execution_duration,
        state=str(info.state), tags=dict(info.tags or {}),
        request_preview=info.request_preview or "", response_preview=info.response_preview or "",
        assessments=trace_assessments(info.assessments),
        root_inputs=dict(inputs) if isinstance(inputs, dict) else None,
        root_outputs=root.outputs if root is not None else None,
        root_attributes=dict(root.attributes) if root is not None else None,
    )


def _attribute(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def annotate_current_span(attributes: dict[str, Any], event: Optional[tuple[str, dict[str, Any]]] = None) -> None:
    """Set attributes (and add an event) on the span open in this context, if a promptops trace has one open."""
    import mlflow

    span = mlflow.get_current_active_span()
    if span is None or span.trace_id not in _SCRUBBERS:  # no trace, or one promptops did not start
        return
    from mlflow.entities import SpanEvent

    span.set_attributes(redact_data(attributes))
    if event is not None:
        name, values = event
        span.add_event(SpanEvent(name, attributes={key: _attribute(value) for key, value in redact_data(values).items()}))
