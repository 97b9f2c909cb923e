"""Replay a traced request: the same question to the same version and model (answered from DSPy's
cache when it still holds the answer, so the replay is exact and free), or to another version or
model, with the outputs side by side.

An agent's replay returns the tool results the trace recorded instead of running the tools, so it
has no side effects and, on the same version and model, follows the same steps; a step the trace
does not have is reported (`diverged`). `live_tools=True` runs the tools again, with the
approvals the trace recorded (a call that was not approved then is denied now).

A replay runs the plain program, without guardrails or a trace of its own: it explains what a
version answers, it is not a production request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

from promptops.errors import PromptopsError


@dataclass(frozen=True)
class ReplayResult:
    trace_id: str
    prompt: str
    inputs: dict[str, Any]
    original_label: str  # "v2 on local/smollm2-135m"
    original_outputs: Optional[dict[str, Any]]  # None when the traced request failed
    original_status: str
    replay_label: str
    replay_outputs: Optional[dict[str, Any]]
    replay_error: Optional[str]
    from_cache: bool
    cost_usd: float
    original_confidence: Optional[dict[str, float]] = None  # label confidences the traced answer had, per field
    replay_confidence: Optional[dict[str, float]] = None
    original_tool_calls: Optional[list[dict[str, Any]]] = None  # an agent's: as the trace recorded them
    replay_tool_calls: Optional[list[dict[str, Any]]] = None
    live_tools: bool = False  # the replay ran the tools instead of returning the recorded results
    diverged: Optional[str] = None  # the first step where the replay called a tool the trace does not have there

    @property
    def same(self) -> bool:
        return self.replay_outputs is not None and self.replay_outputs == self.original_outputs

    @property
    def changed_fields(self) -> list[str]:
        original, replayed = self.original_outputs or {}, self.replay_outputs or {}
        return sorted(name for name in set(original) | set(replayed) if original.get(name) != replayed.get(name))


def replay(trace_id: str, *, version: Optional[str] = None, model: Optional[str] = None, cache: bool = True,
           live_tools: bool = False) -> ReplayResult:
    """Re-run the request traced as `trace_id`; `version` (vN, a channel or commit) and `model` change what answers it.

    For an agent, tools are not run again (their recorded results are returned) unless `live_tools`."""
    from promptops.models import metering
    from promptops.program import build_program, prediction_values
    from promptops.versioning import served_version
    from promptops.runtime import _tracing as tracing
    from promptops.runtime._guarded import _one_line

    trace = tracing.get(trace_id)
    tags = trace.tags
    name = tags.get("promptops.prompt")
    if not name:
        raise PromptopsError(f"trace {trace_id} was not written by a promptops request (no promptops.prompt tag)")
    inputs, outputs = tracing.root_inputs_outputs(trace)
    answered = "promptops.answer_commit" in tags
    commit = tags.get("promptops.answer_commit" if answered else "promptops.commit", "uncommitted")
    traced_model = tags.get("promptops.answer_model" if answered else "promptops.model")
    traced_version = tags.get("promptops.answer_version" if answered else "promptops.version", "?")
    config = json.loads(tags.get("promptops.answer_config", "{}")) if answered else {}

    if version is None and commit == "uncommitted":
        raise PromptopsError(f"trace {trace_id} was answered by an uncommitted working file, which cannot be read back;"
                             " replay it against a version with --version")
    served = served_version(f"{name}@{version or commit}")
    replay_model = model or (traced_model if version is None else served.prompt.model.id)
    if version is not None or model is not None:
        config = {}  # another version or model: its first answer, as a fresh request would get
    program = build_program(served.prompt, model=replay_model, cache=cache, num_retries=0)  # as served: same cache key
    recorded = tracing.recorded_tool_calls(trace)
    task = _replay_task(served.prompt, recorded, live_tools)
    replay_outputs, error = None, None
    from promptops.program import running

    with metering() as meter, running(task):
        try:
            replay_outputs = prediction_values(served.prompt, program.answer(inputs, config))
        except Exception as exc:  # a failing replay is a result to show, like the failing original
            error = _one_line(exc)
    return ReplayResult(
        trace_id=trace_id, prompt=name, inputs=inputs,
        original_label=f"{traced_version} on {traced_model}", original_outputs=outputs,
        original_status=tags.get("promptops.status", "?"),
        replay_label=f"{served.label} on {replay_model}", replay_outputs=replay_outputs, replay_error=error,
        from_cache=meter.model_calls == 0 and meter.cache_hits > 0, cost_usd=meter.cost_usd or 0.0,
        original_confidence=tracing.summarize(trace).confidence,
        replay_confidence=meter.confidence if replay_outputs is not None else None,
        original_tool_calls=recorded, replay_tool_calls=[call.as_dict() for call in task.calls] if task else None,
        live_tools=live_tools and task is not None, diverged=task.diverged if task else None,
    )


def _replay_task(prompt: Any, recorded: Optional[list[dict[str, Any]]], live_tools: bool) -> Any:
    """An agent's `TaskRun` for the replay: the recorded results, or live tools with the recorded approvals."""
    if not prompt.is_agent:
        return None
    from promptops.program import Approval
    from promptops.program import TaskRun
    from promptops.runtime._tracing import observe_tool_call

    calls = list(recorded or [])
    if not live_tools:
        return TaskRun(prompt=prompt.name, recorded=calls, observer=observe_tool_call)

    def as_recorded(request: Any) -> Approval:
        then = calls[request.step] if request.step < len(calls) else None
        if then is None or then.get("name") != request.tool or then.get("approval") not in ("approved", "edited"):
            return Approval("deny", reason="the traced task did not approve this call", approver="replay")
        if then["approval"] == "edited":
            return Approval("edit", args=dict(then.get("args") or {}), approver="replay")
        return Approval("approve", approver="replay")

    return TaskRun(prompt=prompt.name, approver=as_recorded, observer=observe_tool_call)

