"""MLflow traces: the root span of a served request, MLflow's DSPy spans under it, and reading traces back.

What a trace says (tags, status, attributes) is the runtime's business (`promptops.runtime._tracing`);
this module only knows how MLflow stores it.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from promptops.errors import TrackingError
from promptops.tracking._store import _experiment, _first_line, _mlflow, tracking_uri

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
            self._span.add_event(SpanEvent(name, attributes={key: _attribute(value) for key, value in values.items()}))
        if outputs is not None:
            self._span.set_outputs(outputs)
        # MLflow's own keys, so the trace list shows tokens and cost like any traced LLM call.
        self._span.set_attribute(SpanAttributeKey.CHAT_USAGE, {
            "input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens})
        self._span.set_attribute(SpanAttributeKey.LLM_COST, {"total_cost": cost_usd})
        self._span.set_attributes(attributes)
        self._mlflow.update_current_trace(tags=tags, model_id=model_id)  # model_id: an agent version's LoggedModel


@contextmanager
def request_span(prompt_name: str, inputs: dict[str, Any], scrub: Callable[[Any], Any] = lambda value: value) -> Iterator[RequestSpan]:
    """A new trace in the prompt's experiment whose root span is open for the block; written even when the block raises.

    The inputs and outputs of every span of the trace, the root's and DSPy's, pass through `scrub` when the span ends.
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
    scrub = _SCRUBBERS.get(span.trace_id)
    if scrub is None:
        return
    if span.inputs is not None:
        span.set_inputs(scrub(span.inputs))
    if span.outputs is not None:
        span.set_outputs(scrub(span.outputs))


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


def search_traces(prompt_name: str, filter_string: str, *, limit: Optional[int] = None, newest_first: bool = False) -> list[Any]:
    """MLflow `Trace` objects of the prompt's experiment matching the filter: tags and assessments, without spans."""
    mlflow = _mlflow()
    if mlflow.get_experiment_by_name(prompt_name) is None:
        return []
    try:
        return mlflow.search_traces(locations=[experiment_id(prompt_name)], filter_string=filter_string, max_results=limit,
                                    order_by=["timestamp_ms DESC"] if newest_first else None, return_type="list",
                                    include_spans=False, flush=True)
    except Exception as exc:
        raise TrackingError(f"cannot search traces of {prompt_name!r} in MLflow at {tracking_uri()}: {_first_line(exc)}") from None


def get_trace(trace_id: str) -> Optional[Any]:
    """The whole MLflow `Trace` (spans included), or None if the store has no such trace."""
    mlflow = _mlflow()
    try:
        return mlflow.get_trace(trace_id, silent=True, flush=True)
    except Exception:
        return None


def _attribute(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def annotate_current_span(attributes: dict[str, Any], event: Optional[tuple[str, dict[str, Any]]] = None) -> None:
    """Set attributes (and add an event) on the span open in this context, if a promptops trace has one open."""
    import mlflow

    span = mlflow.get_current_active_span()
    if span is None or span.trace_id not in _SCRUBBERS:  # no trace, or one promptops did not start
        return
    from mlflow.entities import SpanEvent

    span.set_attributes(attributes)
    if event is not None:
        name, values = event
        span.add_event(SpanEvent(name, attributes={key: _attribute(value) for key, value in values.items()}))
