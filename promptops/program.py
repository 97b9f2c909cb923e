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


class SharedPrefixJSONAdapter(dspy.JSONAdapter):
    """DSPy's JSONAdapter with the reminder of the output format before a request's inputs, not after them.

    Everything before the inputs is the same for every request of a prompt, so a prefix cache
    (llama.cpp's in the embedded engine, a provider's prompt cache) holds it, and after the inputs
    only the answer is left to compute. After the inputs, DSPy's reminder, which lists every enum
    label, cost about 80 freshly evaluated tokens per banking_intent example, six times the message.
    """

    def __init__(self, tools: Optional[dict[str, Any]] = None, thought_chars: int = 400) -> None:
        super().__init__()
        self.tools = tools  # an agent's tools by name (dspy.Tool, `finish` included): ReAct steps get a step schema
        self.thought_chars = thought_chars
        # Per signature: DSPy rebuilds both on every call (about 3 ms, as much as the rest of an eval's work).
        self._formats: dict[tuple, tuple[Any, Any, Any]] = {}
        self._system_messages: dict[int, tuple[Any, str]] = {}

    def _prepare_response_format(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any) -> None:
        if self.tools and set(signature.output_fields) == set(REACT_STEP_FIELDS):
            from promptops.models import is_local

            lm_kwargs["response_format"] = react_step_format(self.tools, embedded=is_local(lm.model),
                                                             thought_chars=self.thought_chars)
            return
        key = (id(signature), id(lm))
        kept = self._formats.get(key)
        if kept is None or kept[0] is not signature or kept[1] is not lm:
            probe: dict[str, Any] = {}
            super()._prepare_response_format(lm, probe, signature)
            kept = self._formats[key] = (signature, lm, probe.get("response_format"))
        if kept[2] is not None:
            lm_kwargs["response_format"] = kept[2]

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


def build_program(prompt: Prompt, *, model: str | None = None, cache: bool = True, num_retries: int | None = None) -> PromptProgram:
    """The prompt as a runnable DSPy program; `model` overrides the file's model id, `num_retries` the client's own retries."""
    from promptops.models import build_lm

    spec = prompt.model if model is None else prompt.model.model_copy(update={"id": model})
    return PromptProgram(prompt, build_lm(spec, cache=cache, num_retries=num_retries))


def prediction_values(prompt: Prompt, prediction: dspy.Prediction) -> dict[str, Any]:
    """Plain output values (objects as dicts), as metrics and tables want them."""
    values = {}
    for spec in prompt.outputs:
        value = prediction.get(spec.name)
        values[spec.name] = value.model_dump() if hasattr(value, "model_dump") else value
    return values
