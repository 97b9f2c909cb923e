"""Replay a traced request: the same question to the same version and model (answered from DSPy's
cache when it still holds the answer, so the replay is exact and free), or to another version or
model, with the outputs side by side.

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

    @property
    def same(self) -> bool:
        return self.replay_outputs is not None and self.replay_outputs == self.original_outputs

    @property
    def changed_fields(self) -> list[str]:
        original, replayed = self.original_outputs or {}, self.replay_outputs or {}
        return sorted(name for name in set(original) | set(replayed) if original.get(name) != replayed.get(name))


def replay(trace_id: str, *, version: Optional[str] = None, model: Optional[str] = None, cache: bool = True) -> ReplayResult:
    """Re-run the request traced as `trace_id`; `version` (vN, a channel or commit) and `model` change what answers it."""
    from promptops.models._metered import metering
    from promptops.program import build_program, prediction_values
    from promptops.channels import served_version
    from promptops.runtime import tracing
    from promptops.runtime.guarded import _one_line

    trace = tracing.get(trace_id)
    tags = trace.info.tags
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
    replay_outputs, error = None, None
    with metering() as meter:
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
    )
