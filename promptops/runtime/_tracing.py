"""One MLflow trace per guarded request, in the prompt's MLflow experiment, and reading them back.

The root span holds the inputs and outputs; DSPy's own spans (module, adapter, LM) nest under
it through MLflow's DSPy callback, added for the request only so evals and optimizations stay
untraced. Tags make traces searchable by prompt, version, arm and status (`needs_review` for an
answer held for review); decisions are span events; the label confidences the model reported
are the tag `promptops.confidence` (JSON, per field). Inputs and outputs, the root span's and
DSPy's, are redacted like every other thing promptops logs and each text in them is cut to
`MAX_TRACED_CHARS`; the root span records the full sizes (`promptops.input_chars`,
`promptops.output_chars`).

What a trace says is decided here; `promptops.tracking` writes and reads it in MLflow.
Turn tracing off with `PROMPTOPS_TRACING=false` or `promptops.load(..., trace=False)`.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Optional

from promptops._secrets import redact, redact_data, redact_mapping
from promptops.errors import GuardrailError, TrackingError

if TYPE_CHECKING:
    from promptops.tracking import TraceRecord


# Each traced text (an input or output field, a message DSPy sent) is cut to this many characters:
# a refused 1 MB request must not put 1 MB into the tracking database.
MAX_TRACED_CHARS = 2_000


def scrub(value: Any) -> Any:
    """What a trace keeps of a value: secrets masked, every text cut to `MAX_TRACED_CHARS` (saying how long it was)."""
    return redact_data(value, max_chars=MAX_TRACED_CHARS)


def _characters(values: Optional[dict[str, Any]]) -> int:
    """How much text the values hold, as the request or the answer had it."""
    return sum(len(value if isinstance(value, str) else json.dumps(value, default=str)) for value in (values or {}).values())


def tracing_enabled() -> bool:
    return os.environ.get("PROMPTOPS_TRACING", "true").lower() not in ("0", "false", "no", "off")


# Statuses of a request that was answered; the others were refused or failed.
ANSWERED = ("ok", "fallback", "needs_review")


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

    from promptops import tracking

    model_id = _agent_model_id(program)  # before the span: MLflow must not switch experiments while a trace is open
    with tracking.request_span(program.name, redact_mapping(dict(inputs)), scrub=scrub) as span:
        started = time.perf_counter()
        handle.trace_id = span.trace_id
        error: Optional[BaseException] = None
        try:
            with dspy.context(callbacks=tracking.with_dspy_spans(dspy.settings.callbacks)):
                yield handle
        except BaseException as exc:
            error = exc
            raise
        finally:
            latency_s = time.perf_counter() - started
            answer = record.answer
            status = _status(error, answer, record.review)
            model = answer.model if answer else (program.model_override or program.prompt.model.id)
            attributes = {
                "promptops.prompt": program.name, "promptops.version": program.served.label, "promptops.model": model,
                "promptops.input_tokens": record.input_tokens, "promptops.output_tokens": record.output_tokens,
                "promptops.cost_usd": record.cost_usd, "promptops.model_calls": record.model_calls,
                "promptops.cache_hits": record.cache_hits, "promptops.latency_s": latency_s,
                "promptops.decisions": [d["decision"] for d in record.decisions],
                "promptops.input_chars": _characters(inputs),
                "promptops.output_chars": _characters(answer.outputs if answer is not None else None),
            }
            confidence = answer.confidence_by_field if answer is not None else None
            tags = {
                "promptops.prompt": program.name,
                "promptops.version": program.served.label,
                "promptops.commit": program.served.commit or "uncommitted",
                "promptops.model": model,
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
            task = getattr(record, "task", None)
            if task is not None:  # an agent: its tool calls, for `promptops traces`, trajectory checks and replay
                calls = [call.as_dict() for call in task.calls]
                attributes["promptops.tool_calls"] = scrub(calls)
                attributes["promptops.steps"] = record.steps
                tags["promptops.steps"] = str(record.steps)
                tags["promptops.tool_calls"] = _calls_tag(calls)
                asked = [call for call in calls if call["approval"] is not None]
                if asked:
                    tags["promptops.approvals"] = ",".join(f"{call['name']}:{call['approval']}" for call in asked)
            if confidence:
                attributes["promptops.confidence"] = confidence
                tags["promptops.confidence"] = json.dumps(confidence, sort_keys=True)
            if error is not None:
                tags["promptops.error"] = redact(str(error))[:500]
            span.finish(
                model_id=model_id,
                events=[(decision["decision"], scrub(decision)) for decision in record.decisions],
                outputs=scrub(redact_mapping(answer.outputs)) if answer is not None else None,
                input_tokens=record.input_tokens, output_tokens=record.output_tokens, cost_usd=record.cost_usd,
                attributes=attributes, tags=tags,
            )


def _agent_model_id(program: Any) -> Optional[str]:
    """The served agent version's LoggedModel, which its traces link to; None for a prompt, or when MLflow refuses."""
    if not program.prompt.is_agent:
        return None
    from promptops import tracking

    try:
        return tracking.agent_model_id(program.prompt, version=program.served.label, commit=program.served.commit)
    except Exception:  # the request's trace matters more than its link to the model page
        return None


def _calls_tag(calls: list[dict[str, Any]]) -> str:
    """`track_card_delivery,freeze_card[denied]`: the task's tool calls in order, refusals marked."""
    return ",".join(call["name"] + (f"[{call['refused']}]" if call.get("refused") else "") for call in calls)[:4000]


def observe_tool_call(call: Any, approval_event: bool) -> None:
    """A `TaskRun` observer: each tool call of a served or replayed task, on its span as it happens."""
    annotate_tool_span(call.as_dict(), approval_event=approval_event)


def annotate_tool_span(call: dict[str, Any], *, approval_event: bool = False) -> None:
    """Record a tool call's approval, refusal and outcome on its span (MLflow's DSPy TOOL span) as it happens.

    Only inside a traced request: an eval, which imports no MLflow tracing, pays nothing.
    """
    import sys

    if "mlflow" not in sys.modules or not tracing_enabled():
        return
    from promptops import tracking

    attributes = {f"promptops.tool.{key}": value for key, value in call.items()
                  if key in ("step", "approval", "approver", "executed", "refused", "error", "latency_s", "replayed")
                  and value is not None}
    event = None
    if approval_event and call.get("approval") is not None:  # the request for approval and its answer, once
        event = ("approval", scrub({"tool": call["name"], "decision": call["approval"], "approver": call.get("approver") or "",
                                    "reason": call.get("approval_reason") or "", "args": json.dumps(call["args"], default=str),
                                    **({"requested_args": json.dumps(call["requested_args"], default=str)}
                                       if call.get("requested_args") else {})}))
    try:
        tracking.annotate_current_span(attributes, event)
    except Exception:  # a tracing hiccup must not fail the tool call
        pass


def _status(error: Optional[BaseException], answer: Any, review: Any = None) -> str:
    if error is None and review is not None:
        return "needs_review"
    if error is None:
        return "fallback" if answer is not None and answer.fallback else "ok"
    if isinstance(error, GuardrailError) and error.decision in ("input_rejected", "rate_limited", "cost_cap"):
        return "refused"
    return "error"


def flush_traces() -> None:
    """Write traces still queued for asynchronous export (a short-lived CLI process must wait for them)."""
    from promptops import tracking

    tracking.flush_traces()


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
    confidence: Optional[dict[str, float]] = None  # the label confidences the model reported, per field
    steps: Optional[int] = None  # an agent's loop steps; None for a single-call prompt
    tool_calls: Optional[str] = None  # an agent's tool calls in order, refusals marked: "check_top_up,freeze_card[denied]"
    approvals: Optional[str] = None  # each approval asked for and its answer: "freeze_card:denied"


def search_traces(name: str, *, failed: bool = False, needs_review: bool = False, limit: int = 20) -> list[TraceSummary]:
    """The prompt's most recent traces, newest first; `failed`: refused or errored requests only; `needs_review`:
    answers held for review only.

    A name that is no prompt of the project is refused (`UnknownPromptError`), not answered with "no traces yet"."""
    from promptops.artifact import resolve_prompt_path

    name = resolve_prompt_path(name).stem
    return [summarize(trace) for trace in find(name, failed=failed, needs_review=needs_review, limit=limit)]


def find(name: str, *, failed: bool = False, needs_review: bool = False, limit: int = 20) -> list[TraceRecord]:
    """Like `search_traces`, as the tracking records: tags and assessments, without spans."""
    from promptops import tracking

    return tracking.search_traces(name, tags={"promptops.status": "needs_review"} if needs_review else None,
                                  exclude_statuses=ANSWERED if failed else (), limit=limit, newest_first=True)


def summarize(trace: TraceRecord) -> TraceSummary:
    tags = trace.tags
    return TraceSummary(
        trace_id=trace.trace_id, timestamp_ms=trace.request_time_ms, prompt=tags.get("promptops.prompt", ""),
        version=tags.get("promptops.version", ""), model=tags.get("promptops.model", ""),
        status=tags.get("promptops.status", trace.state), arm=tags.get("promptops.arm"),
        decisions=tags.get("promptops.decisions", ""), cost_usd=float(tags.get("promptops.cost_usd", 0) or 0),
        tokens=int(tags.get("promptops.tokens", 0) or 0), latency_s=float(tags.get("promptops.latency_s", 0) or 0),
        request=trace.request_preview, response=trace.response_preview, error=tags.get("promptops.error"),
        confidence=_confidence_tag(tags.get("promptops.confidence")),
        steps=int(tags["promptops.steps"]) if tags.get("promptops.steps", "").isdigit() else None,
        tool_calls=tags.get("promptops.tool_calls"), approvals=tags.get("promptops.approvals"),
    )


def _confidence_tag(text: Optional[str]) -> Optional[dict[str, float]]:
    """The `promptops.confidence` tag read back; None when absent (the model reported none) or unreadable."""
    try:
        value = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    return {str(k): float(v) for k, v in value.items() if isinstance(v, (int, float))} if isinstance(value, dict) else None


def get(trace_id: str) -> TraceRecord:
    """The whole trace (its root span's inputs, outputs and attributes), or a `TrackingError` naming the id."""
    from promptops import tracking

    trace = tracking.get_trace(trace_id)
    if trace is None:
        raise TrackingError(f"no trace {trace_id!r} in MLflow at {tracking.display_uri()}: list them with promptops traces NAME")
    return trace


def recorded_tool_calls(trace: TraceRecord) -> Optional[list[dict[str, Any]]]:
    """An agent trace's tool calls as the root span recorded them (arguments, approvals, results); None for a prompt's."""
    calls = (trace.root_attributes or {}).get("promptops.tool_calls")
    if isinstance(calls, str):
        try:
            calls = json.loads(calls)
        except json.JSONDecodeError:
            return None
    return calls if isinstance(calls, list) else None


def root_inputs_outputs(trace: TraceRecord) -> tuple[dict[str, Any], Optional[dict[str, Any]]]:
    """The request's inputs and outputs as the root span recorded them."""
    return dict(trace.root_inputs or {}), (dict(trace.root_outputs) if isinstance(trace.root_outputs, dict) else None)
