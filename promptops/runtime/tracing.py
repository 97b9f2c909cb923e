"""One MLflow trace per guarded request, in the prompt's MLflow experiment, and reading them back.

The root span holds the inputs and outputs; DSPy's own spans (module, adapter, LM) nest under
it through MLflow's DSPy callback, added for the request only so evals and optimizations stay
untraced. Tags make traces searchable by prompt, version, arm and status; decisions are span
events. Inputs and outputs are redacted like every other thing promptops logs.

Turn tracing off with `PROMPTOPS_TRACING=false` or `promptops.load(..., trace=False)`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from promptops._secrets import redact, redact_mapping
from promptops.errors import GuardrailError, TrackingError

_EXPERIMENTS: dict[tuple[str, str], str] = {}
_EXPERIMENTS_LOCK = threading.Lock()


def tracing_enabled() -> bool:
    return os.environ.get("PROMPTOPS_TRACING", "true").lower() not in ("0", "false", "no", "off")


@dataclass
class TraceHandle:
    trace_id: Optional[str] = None


@contextmanager
def traced_request(program: Any, inputs: dict[str, Any], record: Any, *, enabled: bool = True) -> Iterator[TraceHandle]:
    """Trace the request the block runs; the trace is written even when the block raises."""
    handle = TraceHandle()
    if not (enabled and tracing_enabled()):
        yield handle
        return
    import dspy
    from mlflow.entities import SpanEvent, SpanType
    from mlflow.entities.trace_location import MlflowExperimentLocation
    from mlflow.tracing.constant import SpanAttributeKey

    mlflow = _mlflow_for_traces()
    destination = MlflowExperimentLocation(experiment_id(program.name))
    started = time.perf_counter()
    with mlflow.start_span(name=program.name, span_type=SpanType.CHAIN, trace_destination=destination) as span:
        handle.trace_id = span.trace_id
        span.set_inputs(redact_mapping(dict(inputs)))
        error: Optional[BaseException] = None
        try:
            with dspy.context(callbacks=_callbacks_with_dspy_spans(dspy.settings.callbacks)):
                yield handle
        except BaseException as exc:
            error = exc
            raise
        finally:
            latency_s = time.perf_counter() - started
            for decision in record.decisions:
                span.add_event(SpanEvent(decision["decision"], attributes={k: _attribute(v) for k, v in decision.items()}))
            answer = record.answer
            if answer is not None:
                span.set_outputs(redact_mapping(answer.outputs))
            status = _status(error, answer)
            # MLflow's own keys, so the trace list shows tokens and cost like any traced LLM call.
            span.set_attribute(SpanAttributeKey.CHAT_USAGE, {
                "input_tokens": record.input_tokens, "output_tokens": record.output_tokens,
                "total_tokens": record.input_tokens + record.output_tokens})
            span.set_attribute(SpanAttributeKey.LLM_COST, {"total_cost": record.cost_usd})
            span.set_attributes({
                "promptops.prompt": program.name, "promptops.version": program.served.label,
                "promptops.model": answer.model if answer else (program.model_override or program.prompt.model.id),
                "promptops.input_tokens": record.input_tokens, "promptops.output_tokens": record.output_tokens,
                "promptops.cost_usd": record.cost_usd, "promptops.model_calls": record.model_calls,
                "promptops.cache_hits": record.cache_hits, "promptops.latency_s": latency_s,
                "promptops.decisions": [d["decision"] for d in record.decisions],
            })
            tags = {
                "promptops.prompt": program.name,
                "promptops.version": program.served.label,
                "promptops.commit": program.served.commit or "uncommitted",
                "promptops.model": answer.model if answer else (program.model_override or program.prompt.model.id),
                "promptops.status": status,
                "promptops.cost_usd": f"{record.cost_usd:.8f}",
                "promptops.latency_s": f"{latency_s:.4f}",
                "promptops.tokens": str(record.input_tokens + record.output_tokens),
                "promptops.decisions": ",".join(d["decision"] for d in record.decisions),
            }
            if program.served.channel:
                tags["promptops.channel"] = program.served.channel
            if program.arm:
                tags["promptops.arm"] = program.arm
            if program.key_hash:
                tags["promptops.key_hash"] = program.key_hash
            if answer is not None:
                # What replay needs to ask the same question of the same model again.
                tags.update({"promptops.answered_by": answer.target, "promptops.answer_version": answer.version,
                             "promptops.answer_commit": answer.commit or "uncommitted", "promptops.answer_model": answer.model,
                             "promptops.answer_attempt": str(answer.attempt),
                             "promptops.answer_config": json.dumps(answer.config, sort_keys=True)})
            if error is not None:
                tags["promptops.error"] = redact(str(error))[:500]
            mlflow.update_current_trace(tags=tags)


_REQUEST_SPANS: Any = None


def _callbacks_with_dspy_spans(callbacks: list[Any]) -> list[Any]:
    """DSPy's callbacks plus MLflow's DSPy callback for this request, unless `mlflow.dspy.autolog()` already added it.

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


def _status(error: Optional[BaseException], answer: Any) -> str:
    if error is None:
        return "fallback" if answer is not None and answer.fallback else "ok"
    if isinstance(error, GuardrailError) and error.decision in ("input_rejected", "rate_limited", "cost_cap"):
        return "refused"
    return "error"


def _attribute(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def _mlflow_for_traces() -> Any:
    from promptops.tracking import _mlflow

    return _mlflow()


def experiment_id(prompt_name: str) -> str:
    """The prompt's MLflow experiment, looked up once per process and store."""
    from promptops.tracking import _experiment, tracking_uri

    key = (tracking_uri(), prompt_name)
    with _EXPERIMENTS_LOCK:
        if key not in _EXPERIMENTS:
            _EXPERIMENTS[key] = _experiment(_mlflow_for_traces(), prompt_name)
        return _EXPERIMENTS[key]


def flush() -> None:
    """Write traces still queued for asynchronous export (a short-lived CLI process must wait for them)."""
    import mlflow

    try:
        mlflow.flush_trace_async_logging()
    except Exception:  # nothing queued, or the exporter is synchronous
        pass


# --- reading traces back -------------------------------------------------------------------


@dataclass(frozen=True)
class TraceSummary:
    """One traced request as `promptops traces` lists it."""

    trace_id: str
    timestamp_ms: int
    prompt: str
    version: str
    model: str
    status: str
    arm: Optional[str]
    decisions: str
    cost_usd: float
    tokens: int
    latency_s: float
    request: str
    response: str
    error: Optional[str]


def search(name: str, *, failed: bool = False, limit: int = 20) -> list[TraceSummary]:
    """The prompt's most recent traces, newest first; `failed`: refused or errored requests only."""
    return [summarize(trace) for trace in find(name, failed=failed, limit=limit)]


def find(name: str, *, failed: bool = False, limit: int = 20) -> list[Any]:
    """Like `search`, as MLflow `Trace` objects: tags and assessments, without spans."""
    mlflow = _mlflow_for_traces()
    if mlflow.get_experiment_by_name(name) is None:
        return []
    filter_string = f"tags.`promptops.prompt` = '{name}'"
    if failed:
        filter_string += " AND tags.`promptops.status` != 'ok' AND tags.`promptops.status` != 'fallback'"
    try:
        return mlflow.search_traces(locations=[experiment_id(name)], filter_string=filter_string, max_results=limit,
                                    order_by=["timestamp_ms DESC"], return_type="list", include_spans=False, flush=True)
    except Exception as exc:
        from promptops.tracking import tracking_uri

        raise TrackingError(f"cannot search traces of {name!r} in MLflow at {tracking_uri()}: {redact(str(exc)).splitlines()[0]}") from None


def summarize(trace: Any) -> TraceSummary:
    info = trace.info
    tags = info.tags
    return TraceSummary(
        trace_id=info.trace_id, timestamp_ms=info.request_time, prompt=tags.get("promptops.prompt", ""),
        version=tags.get("promptops.version", ""), model=tags.get("promptops.model", ""),
        status=tags.get("promptops.status", str(info.state)), arm=tags.get("promptops.arm"),
        decisions=tags.get("promptops.decisions", ""), cost_usd=float(tags.get("promptops.cost_usd", 0) or 0),
        tokens=int(tags.get("promptops.tokens", 0) or 0), latency_s=float(tags.get("promptops.latency_s", 0) or 0),
        request=info.request_preview or "", response=info.response_preview or "", error=tags.get("promptops.error"),
    )


def get(trace_id: str) -> Any:
    """The whole trace (spans included), or a `TrackingError` naming the id."""
    mlflow = _mlflow_for_traces()
    try:
        trace = mlflow.get_trace(trace_id, silent=True, flush=True)
    except Exception:
        trace = None
    if trace is None:
        from promptops.tracking import tracking_uri

        raise TrackingError(f"no trace {trace_id!r} in MLflow at {tracking_uri()}: list them with promptops traces NAME")
    return trace


def root_inputs_outputs(trace: Any) -> tuple[dict[str, Any], Optional[dict[str, Any]]]:
    """The request's inputs and outputs as the root span recorded them."""
    root = next(span for span in trace.data.spans if span.parent_id is None)
    return dict(root.inputs or {}), (dict(root.outputs) if isinstance(root.outputs, dict) else None)
