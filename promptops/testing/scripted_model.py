"""A scripted model for tests of the logic around a model, in the spirit of DSPy's `DummyLM`: the model string
`scripted/NAME` answers from a script, and DSPy's adapter and cache and promptops' metering, budgets and
tracing run around it as around any model.

    from promptops.testing import Reply, ScriptedModel

    with ScriptedModel("labels", {"lost my card": {"intent": "lost_or_stolen_card"}}) as model:
        promptops.evaluate("banking_intent", model=model.model_id)  # or `model: {id: scripted/labels}` in the file

A script is a mapping from a piece of an input's text to the answer (an input equal to a key first, then
the first key found in an input, or in the message when it has no input fields), or a function of the
`ScriptedRequest`: its inputs, the output fields it asks for and its system message, which holds the
instructions. An answer is the output values, or a `Reply` that also says what a model reports beside
them: label confidences, token logprobs, an answer cut off at max_tokens, token counts. It goes back as
the JSON object of the asked-for fields that DSPy's JSONAdapter parses. Usage is `input_tokens` and
`output_tokens` per request (unless the reply says), priced at `usd_per_million` unless the prompt file
sets `model.price`. DSPy caches the answers by model string and request, as any model's: a script that
answers the same request differently wants a name of its own, or a fresh cache.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence, Union

_FIELD_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")  # how DSPy's adapters head each field of a message
_OUTPUT_FIELD = re.compile(r"^\d+\. `(\w+)`", re.MULTILINE)


@dataclass(frozen=True)
class ScriptedRequest:
    """One request as a script sees it."""

    inputs: dict[str, str]  # the input fields of its last user message, as DSPy's adapter wrote them
    message: str  # that message whole (all there is of a bare `lm("...")`)
    outputs: tuple[str, ...]  # the output fields it asks for, in order; empty for a bare `lm("...")`
    system: str  # the system message: the fields, then the instructions
    request: Any  # the `dspy.lm15.Request` itself


@dataclass(frozen=True)
class Reply:
    """A scripted answer and what the model reports beside it."""

    values: dict[str, Any]
    confidence: Optional[dict[str, float]] = None  # per label field, as the embedded engine reports it
    logprobs: Optional[Sequence[tuple[str, float]]] = None  # (token, logprob) of the answer, as a hosted model reports them
    truncated: bool = False  # the answer stopped at max_tokens
    input_tokens: Optional[int] = None  # the model's defaults when None
    output_tokens: Optional[int] = None


Answer = Union[Mapping[str, Any], Reply]
Script = Union[Mapping[str, Answer], Callable[[ScriptedRequest], Answer]]

_INSTALLED: dict[str, "ScriptedModel"] = {}
_INSTALLED_LOCK = threading.Lock()


class ScriptedModel:
    """The engine behind `scripted/NAME`: answers each request from its script and keeps the requests it got."""

    supports_response_schema = True
    supported_params = frozenset({"temperature", "max_tokens", "response_format"})

    def __init__(self, name: str, script: Script, *, input_tokens: int = 100, output_tokens: int = 10,
                 usd_per_million: Optional[tuple[float, float]] = (1.0, 1.0)) -> None:
        self.name = name
        self.script = script
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.usd_per_million = usd_per_million
        self.requests: list[Any] = []  # every `dspy.lm15.Request` that reached the model (cache hits do not)

    @property
    def model_id(self) -> str:
        return f"scripted/{self.name}"

    def install(self) -> "ScriptedModel":
        """Serve `scripted/NAME` in this process from now on (replacing a model of the same name)."""
        from promptops.models import register_engine

        with _INSTALLED_LOCK:
            _INSTALLED[self.name] = self
            register_engine("scripted", _installed_model)
        return self

    def uninstall(self) -> None:
        from promptops.models import register_engine

        with _INSTALLED_LOCK:
            if _INSTALLED.get(self.name) is self:
                del _INSTALLED[self.name]
            if not _INSTALLED:
                register_engine("scripted", None)

    def __enter__(self) -> "ScriptedModel":
        return self.install()

    def __exit__(self, *exc_info: Any) -> None:
        self.uninstall()

    def answer(self, request: ScriptedRequest) -> Reply:
        """The script's reply to one request."""
        if callable(self.script):
            found = self.script(request)
        else:
            values = list(request.inputs.values()) or [request.message]
            key = next((key for key in self.script if key in values), None)
            if key is None:
                key = next((key for key in self.script if any(key in value for value in values)), None)
            if key is None:
                raise LookupError(f"{self.model_id} has no answer for the inputs {request.inputs!r}")
            found = self.script[key]
        return found if isinstance(found, Reply) else Reply(dict(found))

    # --- DSPy's engine contract (dspy.clients.engines.base) ---

    def complete(self, request: Any) -> Any:
        from dspy.lm15 import Message, Response, TextPart, TokenLogprob, Usage

        self.requests.append(request)
        reply = self.answer(read_request(request))
        extra: dict[str, Any] = {}
        if reply.confidence is not None:
            extra["provider_data"] = {"promptops": {"confidence": dict(reply.confidence)}}
        if reply.logprobs is not None:
            extra["logprobs"] = tuple(TokenLogprob(token, logprob) for token, logprob in reply.logprobs)
        return Response(
            id=None,
            model=self.model_id,
            message=Message.assistant([TextPart(answer_text(reply.values, read_outputs(request)))]),
            finish_reason="length" if reply.truncated else "stop",
            usage=Usage(input_tokens=self.input_tokens if reply.input_tokens is None else reply.input_tokens,
                        output_tokens=self.output_tokens if reply.output_tokens is None else reply.output_tokens),
            **extra,
        )

    def stream(self, request: Any) -> Any:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        pass


def _installed_model(spec: Any) -> ScriptedModel:
    """The engine factory `scripted/NAME` is registered with (`promptops.models.register_engine`)."""
    from promptops.errors import UnknownModelError

    name = spec.id.removeprefix("scripted/")
    with _INSTALLED_LOCK:
        model = _INSTALLED.get(name)
    if model is None:
        raise UnknownModelError(f"unknown model {spec.id!r}: no scripted model {name!r} is installed in this process")
    return model


def read_request(request: Any) -> ScriptedRequest:
    """The inputs, asked-for outputs and system message of a `dspy.lm15.Request`."""
    system = request.system if isinstance(request.system, str) or request.system is None else "".join(
        getattr(part, "text", "") or "" for part in request.system)
    last = next((message.text or "" for message in reversed(request.messages) if message.role == "user"), "")
    return ScriptedRequest(read_inputs(last), last, read_outputs(request), system or "", request)


def read_inputs(message: str) -> dict[str, str]:
    """The fields of a user message DSPy's adapter wrote: `[[ ## name ## ]]` then the value, until the next field."""
    parts = _FIELD_HEADER.split(message)
    inputs = {name: value.strip() for name, value in zip(parts[1::2], parts[2::2])}
    if inputs:  # an adapter that reminds of the output format after the inputs puts it in the last one
        last = next(reversed(inputs))
        inputs[last] = inputs[last].split("\n\nRespond with ", 1)[0].strip()
    return inputs


def read_outputs(request: Any) -> tuple[str, ...]:
    """The output fields asked for: the properties of the response's JSON schema, else the system message's list."""
    response_format = request.config.response_format
    if isinstance(response_format, dict):
        schema = response_format.get("schema") or (response_format.get("json_schema") or {}).get("schema") or {}
        if schema.get("properties"):
            return tuple(schema["properties"])
    system = request.system if isinstance(request.system, str) else ""
    listed = (system or "").partition("Your output fields are:")[2].partition("All interactions")[0]
    return tuple(_OUTPUT_FIELD.findall(listed))


def answer_text(values: Mapping[str, Any], outputs: Sequence[str]) -> str:
    """The JSON object DSPy's JSONAdapter parses: the asked-for fields the answer has, in the order asked."""
    from dspy.adapters.utils import serialize_for_json

    chosen = {name: values[name] for name in outputs if name in values} if outputs else dict(values)
    return json.dumps(serialize_for_json(chosen), ensure_ascii=False)
