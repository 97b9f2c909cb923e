"""A scripted agent model for the FaultServer: it answers DSPy ReAct's steps from a plan per task.

    from promptops.testing import FaultServer, ScriptedAgent, plan

    agent = ScriptedAgent({
        "lost my card": plan(["freeze_card", {"customer_id": "C-1001"}], outputs={"intent": "lost_or_stolen_card"}),
    })
    with FaultServer(answer=agent) as server:
        ...  # an agent prompt whose model.api_base is server.base_url

A task is recognised by a substring of an input field (`field`, default `text`). Each step
request is answered with the plan's next call (the thought, the tool name and its arguments),
then `finish`; the request that reads the trajectory is answered with the plan's outputs. The
step number comes from the trajectory DSPy sends, so one agent serves many tasks at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from promptops.testing.fault_server import default_answer, last_user_message, request_schema

_STEP = re.compile(r"\[\[ ## tool_name_(\d+) ## \]\]")


@dataclass(frozen=True)
class AgentPlan:
    """What the scripted agent does for one task: tool calls in order (name, arguments), then the outputs."""

    calls: tuple[tuple[str, dict[str, Any]], ...]
    outputs: dict[str, Any] = field(default_factory=dict)
    finish: bool = True  # False: never choose `finish` (the loop runs until max_steps)


def plan(*calls: Any, outputs: Optional[dict[str, Any]] = None, finish: bool = True) -> AgentPlan:
    """`plan(["check_top_up", {"customer_id": "C-1001"}], "finish", outputs={...})`: a name alone calls with no arguments."""
    steps = []
    for call in calls:
        if isinstance(call, str):
            steps.append((call, {}))
        else:
            name, args = call
            steps.append((name, dict(args)))
    steps = [step for step in steps if step[0] != "finish"]
    return AgentPlan(tuple(steps), dict(outputs or {}), finish)


class ScriptedAgent:
    """An `answer` callable for `FaultServer`: ReAct steps and the final outputs from a plan per task."""

    def __init__(self, plans: dict[str, AgentPlan], *, field: str = "text", default: Optional[AgentPlan] = None):
        self.plans = dict(plans)
        self.field = field
        self.default = default

    def plan_for(self, body: dict) -> AgentPlan:
        text = last_user_message(body, self.field)
        for key, found in self.plans.items():
            if key.lower() in text.lower():
                return found
        if self.default is not None:
            return self.default
        raise LookupError(f"no plan for the task {text[:80]!r}")

    def __call__(self, body: dict) -> dict:
        schema = request_schema(body) or {}
        properties = schema.get("properties") or {}
        found = self.plan_for(body)
        if "next_tool_name" in properties:
            trajectory = last_user_message(body)
            step = max((int(number) + 1 for number in _STEP.findall(trajectory)), default=0)
            if step < len(found.calls):
                name, args = found.calls[step]
                return {"next_thought": f"Step {step}: I call {name}.", "next_tool_name": name, "next_tool_args": args}
            if not found.finish:
                name, args = found.calls[-1] if found.calls else ("finish", {})
                return {"next_thought": "Again.", "next_tool_name": name, "next_tool_args": args}
            return {"next_thought": "Done.", "next_tool_name": "finish", "next_tool_args": {}}
        answer = default_answer(schema) if schema else {}
        if not isinstance(answer, dict):
            answer = {}
        if "reasoning" in properties:
            answer["reasoning"] = "The trajectory answers it."
        answer.update(found.outputs)
        return answer
