"""A `Prompt` turned into a DSPy signature and a callable program, and back.

The program answers through DSPy's JSONAdapter (with its format reminder moved before the inputs,
see `SharedPrefixJSONAdapter`): it sends the output fields as a JSON schema, which the embedded
engine follows by construction and hosted models take as structured output.
"""

from __future__ import annotations

from typing import Any, Optional

import dspy

from promptops.artifact import Prompt


def build_signature(prompt: Prompt) -> type[dspy.Signature]:
    fields: dict[str, Any] = {}
    for spec in prompt.inputs:
        fields[spec.name] = (spec.python_type, dspy.InputField(desc=spec.description or None))
    for spec in prompt.outputs:
        fields[spec.name] = (spec.python_type, dspy.OutputField(desc=spec.description or None))
    name = "".join(part.capitalize() for part in prompt.name.replace("-", "_").split("_"))
    return dspy.make_signature(fields, prompt.instructions.strip(), signature_name=name or "Prompt")


REACT_STEP_FIELDS = ("next_thought", "next_tool_name", "next_tool_args")


def react_step_format(tools: dict[str, Any], *, embedded: bool, thought_chars: int = 400) -> dict[str, Any]:
    """The JSON schema of one DSPy ReAct step, so that every step is a complete, valid step.

    DSPy asks for JSON mode here (the arguments are an open `dict`), which lets a small model answer
    `{}`. This schema requires the three fields, bounds the thought, makes the tool name one of the
    tools and the arguments that tool's arguments: for the embedded engine as a case per tool
    (`x-promptops-cases`, decoded after the name is chosen), for hosted models as `anyOf`.
    """
    cases = {name: _arguments_schema(tool) for name, tool in tools.items()}
    arguments: dict[str, Any] = (
        {"type": "object", "x-promptops-depends-on": "next_tool_name", "x-promptops-cases": cases}
        if embedded else {"anyOf": list(cases.values())}
    )
    schema = {
        "type": "object",
        "properties": {
            "next_thought": {"type": "string", "maxLength": thought_chars},
            "next_tool_name": {"type": "string", "enum": list(tools)},
            "next_tool_args": arguments,
        },
        "required": list(REACT_STEP_FIELDS),
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": "ReActStep", "schema": schema, "strict": True}}


def _arguments_schema(tool: Any) -> dict[str, Any]:
    properties = dict(getattr(tool, "args", None) or {})
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def _bounded_text(model: Any, limits: dict[str, int]) -> dict[str, Any]:
    """The output schema with these text fields bounded (an agent's last reasoning, a judge's reason), so it fits max_tokens."""
    schema = model.model_json_schema()
    for name, chars in limits.items():
        prop = schema.get("properties", {}).get(name)
        if isinstance(prop, dict):
            prop["maxLength"] = chars
    return {"type": "json_schema", "json_schema": {"name": model.__name__, "schema": schema, "strict": True}}


class SharedPrefixJSONAdapter(dspy.JSONAdapter):
    """DSPy's JSONAdapter with the reminder of the output format before a request's inputs, not after them.

    Everything before the inputs is the same for every request of a prompt, so a prefix cache
    (llama.cpp's in the embedded engine, a provider's prompt cache) holds it, and after the inputs
    only the answer is left to compute. After the inputs, DSPy's reminder, which lists every enum
    label, cost about 80 freshly evaluated tokens per banking_intent example, six times the message.
    """

    def __init__(self, tools: Optional[dict[str, Any]] = None, thought_chars: int = 400,
                 text_limits: Optional[dict[str, int]] = None) -> None:
        super().__init__()
        self.tools = tools  # an agent's tools by name (dspy.Tool, `finish` included): ReAct steps get a step schema
        self.thought_chars = thought_chars
        # Output text fields bounded to so many characters (an agent's final reasoning, a judge's reason).
        self.text_limits = dict(text_limits or {})
        if tools:
            self.text_limits.setdefault("reasoning", thought_chars)
        # Per signature: DSPy rebuilds both on every call (about 3 ms, as much as the rest of an eval's work).
        self._formats: dict[tuple, tuple[Any, Any, Any]] = {}
        self._system_messages: dict[int, tuple[Any, str]] = {}

    def _prepare_response_format(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any) -> None:
        key = (id(signature), id(lm))
        kept = self._formats.get(key)
        if kept is None or kept[0] is not signature or kept[1] is not lm:
            kept = self._formats[key] = (signature, lm, self._response_format(lm, signature))
        if kept[2] is not None:
            lm_kwargs["response_format"] = kept[2]

    def _response_format(self, lm: Any, signature: Any) -> Any:
        """The signature's response format on this LM: an agent's step schema, DSPy's own otherwise (reasoning bounded)."""
        if self.tools and set(signature.output_fields) == set(REACT_STEP_FIELDS):
            from promptops.models import is_local

            if "response_format" not in lm.supported_params:
                return None
            return react_step_format(self.tools, embedded=is_local(lm.model), thought_chars=self.thought_chars)
        probe: dict[str, Any] = {}
        super()._prepare_response_format(lm, probe, signature)
        response_format = probe.get("response_format")
        limits = {name: chars for name, chars in self.text_limits.items() if name in signature.output_fields}
        if limits and isinstance(response_format, type):
            response_format = _bounded_text(response_format, limits)
        return response_format

    def format_system_message(self, signature: Any) -> str:
        kept = self._system_messages.get(id(signature))
        if kept is None or kept[0] is not signature:
            kept = self._system_messages[id(signature)] = (signature, super().format_system_message(signature))
        return kept[1]

    def format_user_message_content(self, signature: Any, inputs: dict[str, Any], prefix: str = "", suffix: str = "",
                                    main_request: bool = False) -> str:
        if main_request:
            requirements = self.user_message_output_requirements(signature)
            prefix = "\n\n".join(part for part in (prefix, requirements) if part)
        return super().format_user_message_content(signature, inputs, prefix, suffix, main_request=False)


class PromptProgram(dspy.Module):
    """One prediction step with the prompt's instructions, demos, model and adapter."""

    def __init__(self, prompt: Prompt, lm: Any):
        super().__init__()
        self.prompt = prompt
        self.lm = lm
        self.adapter = SharedPrefixJSONAdapter()
        self.predict = dspy.Predict(build_signature(prompt))
        self.predict.demos = [dspy.Example(**demo) for demo in prompt.demos]

    def forward(self, **inputs: Any) -> dspy.Prediction:
        return self.answer(inputs)

    def answer(self, inputs: dict[str, Any], config: dict[str, Any] | None = None) -> dspy.Prediction:
        """`config` overrides LM parameters for this call only, e.g. a retry's `rollout_id` and temperature."""
        with dspy.context(lm=self.lm, adapter=self.adapter):
            return self.predict(**inputs, config=config or {})


class AgentProgram(dspy.Module):
    """An agent: DSPy's ReAct over the prompt's tools, with its instructions, fields, model and loop.

    Each step is one model call choosing a tool (or `finish`) and its arguments, then that tool's
    call through the task's rules (`promptops.program._tools`); after at most `agent.max_steps`
    steps, one more call reads the trajectory and fills the outputs. The prompt's demos are the
    output step's. A prediction carries `tool_calls` (the task's calls, as dicts) and `steps`.
    """

    def __init__(self, prompt: Prompt, lm: Any, tools: list[Any]):
        super().__init__()
        from promptops.program._tools import as_dspy_tool

        self.prompt = prompt
        self.lm = lm
        self.tools = tools  # promptops.program._tools.ResolvedTool, in file order
        self.react = dspy.ReAct(build_signature(prompt), tools=[as_dspy_tool(tool) for tool in tools],
                                max_iters=prompt.loop.max_steps)
        self.adapter = SharedPrefixJSONAdapter(tools=self.react.tools, thought_chars=prompt.loop.thought_chars)
        self.react.extract.predict.demos = [dspy.Example(**demo) for demo in prompt.demos]
        self.react.react.demos = [dspy.Example(**demo) for demo in prompt.loop.demos]

    def forward(self, **inputs: Any) -> dspy.Prediction:
        return self.answer(inputs)

    def answer(self, inputs: dict[str, Any], config: dict[str, Any] | None = None) -> dspy.Prediction:
        """Run one task; its tool calls join the current `TaskRun` (a guarded request's) or a new one (deny-all approver)."""
        from promptops.program._tools import TaskRun, current_task, running

        task = current_task() or TaskRun(prompt=self.prompt.name)
        first = len(task.calls)
        with running(task), dspy.context(lm=self.lm, adapter=self.adapter):
            prediction = self.react(**inputs, config=config) if config else self.react(**inputs)
        prediction.tool_calls = [call.as_dict() for call in task.calls[first:]]
        prediction.steps = sum(1 for key in prediction.trajectory if key.startswith("tool_name_"))
        task.steps += prediction.steps
        return prediction


def build_program(prompt: Prompt, *, model: str | None = None, cache: bool = True, num_retries: int | None = None) -> Any:
    """The prompt as a runnable DSPy program (an `AgentProgram` when it has tools); `model` overrides the file's
    model id, `num_retries` the client's own retries."""
    from promptops.models import build_lm

    spec = prompt.model if model is None else prompt.model.model_copy(update={"id": model})
    lm = build_lm(spec, cache=cache, num_retries=num_retries)
    if prompt.is_agent:
        from promptops.artifact import resolve_tools

        return AgentProgram(prompt, lm, resolve_tools(prompt))
    return PromptProgram(prompt, lm)


def prediction_values(prompt: Prompt, prediction: dspy.Prediction) -> dict[str, Any]:
    """Plain output values (objects as dicts), as metrics and tables want them."""
    values = {}
    for spec in prompt.outputs:
        value = prediction.get(spec.name)
        values[spec.name] = value.model_dump() if hasattr(value, "model_dump") else value
    return values
