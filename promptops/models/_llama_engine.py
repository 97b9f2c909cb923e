"""The embedded model: a DSPy engine that runs a GGUF file in-process with llama.cpp.

DSPy 3.4 drives custom backends through `dspy.LM(model, engine=...)`: the engine turns one
`dspy.lm15.Request` into one `Response`, and DSPy keeps owning the cache, retries and history.
Calls through an engine are cached by DSPy; a `BaseLM.forward()` subclass would not be.

Weak local models rarely follow DSPy's output format on their own, so a JSON schema in the
request decides what the model may write: by default its fixed text is appended and its labels
chosen by likelihood (`promptops.models._decoder`), else it becomes a llama.cpp grammar. Either
way the model can only emit JSON that fits the schema, with keys in the schema's order.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from promptops.errors import ModelUnavailableError
from promptops.models._plan import compile_plan

DEFAULT_CONTEXT_TOKENS = 4096


@dataclass
class LoadedModel:
    """A llama.cpp model and the one thread that runs it.

    llama.cpp contexts are not thread-safe, so calls are serialised; running them all on one
    long-lived thread (instead of under a lock in whichever thread DSPy calls from) also keeps
    their speed steady: measured here, the same calls took about 40% longer from a fresh
    worker thread than from a long-lived one.
    """

    llama: Any
    worker: ThreadPoolExecutor
    _states: Any = None  # llama_cpp.LlamaRAMCache: prompts' evaluated states, for prompts that interleave
    baselines: dict = field(default_factory=dict)  # content-free label distributions (calibration)
    _format: Any = None
    # Token lists of prompts that are the same for every input of a prompt (the chat with its last
    # message blanked, the content-free chat), so a request does not render and tokenize them again.
    _kept_tokens: "OrderedDict[tuple, list[int]]" = field(default_factory=OrderedDict)

    def run(self, function: Callable[[], Any]) -> Any:
        return self.worker.submit(function).result()

    @property
    def states(self) -> Any:
        if self._states is None:
            from llama_cpp import LlamaRAMCache

            from promptops.models._decoder import STATE_CACHE_BYTES

            self._states = LlamaRAMCache(capacity_bytes=STATE_CACHE_BYTES)
        return self._states

    def shared_length(self, messages: list[dict[str, str]], prompt: list[int]) -> int:
        """How many of the prompt's tokens come before the last message's content: what every input shares."""
        if not messages:
            return 0
        blank = self.prompt_tokens([*messages[:-1], {**messages[-1], "content": ""}], keep=True)
        from promptops.models._decoder import common_prefix_length

        return common_prefix_length(blank, prompt)

    def prompt_tokens(self, messages: list[dict[str, str]], *, keep: bool = False) -> list[int]:
        """The chat as the model's template lays it out, in tokens (its special tokens parsed as such).

        `keep`: a chat many requests share; its tokens are kept (64 chats at most) instead of recomputed.
        """
        if keep:
            key = tuple((message["role"], message["content"]) for message in messages)
            tokens = self._kept_tokens.get(key)
            if tokens is None:
                tokens = self._kept_tokens[key] = self.prompt_tokens(messages)
                if len(self._kept_tokens) > 64:
                    self._kept_tokens.popitem(last=False)
            return tokens
        if self._format is None:
            self._format = _chat_format(self.llama)
        text, add_bos = self._format(messages)
        return self.llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)


def _chat_format(llama: Any) -> Callable[[list[dict[str, str]]], tuple[str, bool]]:
    """The model's own chat template when the GGUF file has one; Gemma's turns; else ChatML.

    llama-cpp-python falls back to Llama 2's [INST] layout for a file without a template, which is
    wrong for Gemma 3 (whose GGUF carries none), and its Gemma format drops the system message,
    which holds DSPy's instructions; Gemma's own template puts it at the top of the first user turn.
    """
    from llama_cpp import llama_chat_format

    template = llama.metadata.get("tokenizer.chat_template")
    if template:
        eos, bos = llama.token_eos(), llama.token_bos()
        formatter = llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=llama._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llama._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )

        def jinja(messages: list[dict[str, str]]) -> tuple[str, bool]:
            result = formatter(messages=messages)
            return result.prompt, not result.added_special

        return jinja
    if llama.metadata.get("general.architecture", "").startswith("gemma"):
        def gemma(messages: list[dict[str, str]]) -> tuple[str, bool]:
            system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
            turns, pending = [], system
            for message in messages:
                if message["role"] == "system":
                    continue
                role = "model" if message["role"] == "assistant" else "user"
                content = message["content"]
                if role == "user" and pending:
                    content, pending = f"{pending}\n\n{content}", ""
                turns.append(f"<start_of_turn>{role}\n{content}<end_of_turn>\n")
            if pending:
                turns.insert(0, f"<start_of_turn>user\n{pending}<end_of_turn>\n")
            return "".join(turns) + "<start_of_turn>model\n", True

        return gemma

    def chatml(messages: list[dict[str, str]]) -> tuple[str, bool]:
        return llama_chat_format.format_chatml(messages).prompt, False

    return chatml


# One model per file per process: loading costs seconds and memory.
_MODELS: dict[str, LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


def load_llama(path: str | Path, context_tokens: int = DEFAULT_CONTEXT_TOKENS) -> LoadedModel:
    """The process-wide llama.cpp model for `path`, loaded on first use."""
    key = f"{Path(path).resolve()}#{context_tokens}"
    with _MODELS_LOCK:
        if key not in _MODELS:
            try:
                from llama_cpp import Llama
            except ImportError:
                raise ModelUnavailableError(
                    "the embedded model needs llama-cpp-python: pip install llama-cpp-python"
                ) from None
            _silence_llama_logs()
            threads = int(os.environ.get("PROMPTOPS_LLAMA_THREADS", 0)) or max(1, os.cpu_count() or 1)
            worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{Path(path).stem}")
            llama = worker.submit(
                Llama, model_path=str(path), n_ctx=context_tokens, n_threads=threads, n_batch=512, seed=0, verbose=False
            ).result()
            if not _MODELS:
                atexit.register(_close_models)
            _MODELS[key] = LoadedModel(llama, worker)
        return _MODELS[key]


_LOG_CALLBACK: Any = None


def _silence_llama_logs() -> None:
    """llama.cpp prints load-time notes to stderr even with verbose=False; failures still raise."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        import llama_cpp

        _LOG_CALLBACK = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        llama_cpp.llama_log_set(_LOG_CALLBACK, None)


def _close_models() -> None:
    """Free llama.cpp models before interpreter teardown, when their destructors can no longer run cleanly."""
    with _MODELS_LOCK:
        for loaded in _MODELS.values():
            loaded.worker.shutdown(wait=True)  # no call is running once this returns
            loaded.llama.close()
        _MODELS.clear()


@lru_cache(maxsize=64)
def _grammar_for(schema_json: str) -> Any:
    """A schema as a LlamaGrammar object, for `promptops doctor`'s direct llama.cpp call."""
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_json_schema(schema_json, verbose=False)


DECODINGS = ("guided", "guided-sampled", "grammar")
# Contextual calibration: of every decision (True), of none (False), or of label choices only ("labels", the default:
# uncalibrated, a small model gives one label to almost every input; calibrating null-or-a-value drops real values).
CALIBRATIONS = (True, False, "labels")


class LlamaEngine:
    """Runs chat requests on one GGUF file; declares structured output so DSPy's JSONAdapter sends a schema.

    `decoding="guided"` (the default) writes a schema's fixed text without sampling and picks
    enum labels by likelihood (`promptops.models._decoder`); `"grammar"` samples the whole answer
    under the schema's grammar. `calibrate` offsets decisions by what the prompt gives a content-free
    input: label choices only (`"labels"`, the default), every decision (`True`: null-or-a-value too), or none. Each request reports its label confidences in `provider_data`.
    """

    supports_response_schema = True
    supports_function_calling = False
    supports_reasoning = False
    supported_params = frozenset({"temperature", "max_tokens", "top_p", "top_k", "stop", "seed", "response_format"})

    def __init__(self, model_id: str, path: str | Path, context_tokens: int = DEFAULT_CONTEXT_TOKENS, *,
                 decoding: str = "guided", calibrate: "bool | str" = "labels"):
        if decoding not in DECODINGS:
            raise ValueError(f"decoding must be one of {', '.join(DECODINGS)}, not {decoding!r}")
        if calibrate not in CALIBRATIONS:
            raise ValueError(f"calibrate must be true, false or 'labels', not {calibrate!r}")
        self.model_id = model_id
        self.path = Path(path)
        self.context_tokens = context_tokens
        self.decoding = decoding
        self.calibrate = calibrate
        self.calls = 0  # requests that reached llama.cpp (cache hits never get here)

    def complete(self, request: Any) -> Any:
        from dspy.clients.engines.base import validate_request
        from dspy.lm15 import Message, Response, TextPart, Usage

        validate_request(request)
        config = request.config
        answer = self.answer(
            _chat_messages(request),
            response_format=config.response_format,
            temperature=0.0 if config.temperature is None else config.temperature,
            max_tokens=config.max_tokens or 256,
            seed=0 if config.seed is None else config.seed,
            top_p=config.top_p,
            top_k=config.top_k,
            stop=list(config.stop or ()),
        )
        data: dict[str, Any] = {"latency_s": answer.latency_s, "decoding": answer.decoding,
                                "prompt_tokens_reused": answer.decoded.stats.prompt_tokens_reused}
        if answer.decoded.confidence:
            data["confidence"] = answer.decoded.confidence
        return Response(
            id=None,
            model=self.model_id,
            message=Message.assistant([TextPart(answer.decoded.text)]),
            finish_reason=answer.decoded.finish,
            usage=Usage(input_tokens=answer.decoded.stats.prompt_tokens, output_tokens=answer.decoded.output_tokens),
            # Kept in DSPy's cache with the answer, so a cache hit still knows what the call cost and how sure it was.
            provider_data={"promptops": data},
        )

    def answer(self, messages: list[dict[str, str]], *, response_format: Optional[dict[str, Any]] = None,
               temperature: float = 0.0, max_tokens: int = 256, seed: int = 0, top_p: Optional[float] = None,
               top_k: Optional[int] = None, stop: Sequence[str] = ()) -> "EngineAnswer":
        """One chat request decoded on the model's thread; the engine's contract without DSPy around it."""
        from promptops.models import _decoder

        loaded = load_llama(self.path, self.context_tokens)
        schema = _schema_from_response_format(response_format)
        plan = compile_plan(schema) if schema is not None and self.decoding != "grammar" else None
        decoding = "text" if schema is None else (self.decoding if plan is not None else "grammar")

        def run() -> tuple[_decoder.Decoded, float]:
            started = time.perf_counter()
            prompt = loaded.prompt_tokens(messages)
            if len(prompt) + max_tokens > loaded.llama.n_ctx():
                raise _ContextTooLong(len(prompt), loaded.llama.n_ctx())
            decoder = _decoder.Decoder(loaded.llama, prompt, temperature=temperature, seed=seed, max_tokens=max_tokens,
                                       top_p=top_p, top_k=top_k, states=loaded.states,
                                       shared_length=loaded.shared_length(messages, prompt))
            if plan is not None:
                calibration = None
                if self.calibrate:
                    calibration = _decoder.Calibration(loaded.prompt_tokens(content_free(messages), keep=True),
                                                       loaded.baselines, labels_only=self.calibrate == "labels")
                decoded = _decoder.decode_plan(decoder, plan, calibration, sample_choices=decoding == "guided-sampled")
            elif schema is not None:
                decoded = _decoder.decode_grammar(decoder, _grammar_text_for(json.dumps(schema)))
            else:
                decoded = _decoder.decode_text(decoder, stop)
            return decoded, time.perf_counter() - started

        try:
            decoded, latency_s = loaded.run(run)
        except _ContextTooLong as exc:
            from dspy.lm15 import ContextLengthError

            raise ContextLengthError(f"{self.model_id}: {exc}") from None
        with _MODELS_LOCK:
            self.calls += 1
            _TOTALS.add(decoded.stats, latency_s)
        return EngineAnswer(decoded, latency_s, decoding)

    def stream(self, request: Any) -> Any:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        """Models are shared per process and outlive any one LM; nothing to release here."""


@dataclass(frozen=True)
class EngineAnswer:
    decoded: Any  # promptops.models._decoder.Decoded
    latency_s: float
    decoding: str  # guided, grammar or text


@dataclass
class DecodeTotals:
    """What the embedded engines' requests cost, summed over the process: for benchmarks."""

    requests: int = 0
    seconds: float = 0.0
    prompt_tokens: int = 0
    prompt_tokens_reused: int = 0
    forward_passes: int = 0
    sampled_tokens: int = 0
    state_loads: int = 0

    def add(self, stats: Any, seconds: float) -> None:
        self.requests += 1
        self.seconds += seconds
        self.prompt_tokens += stats.prompt_tokens
        self.prompt_tokens_reused += stats.prompt_tokens_reused
        self.forward_passes += stats.forward_passes
        self.sampled_tokens += stats.sampled_tokens
        self.state_loads += stats.state_loads


_TOTALS = DecodeTotals()


def engine_totals() -> dict[str, float]:
    """What every embedded engine of this process has decoded so far (benchmarks take differences)."""
    with _MODELS_LOCK:
        return dict(vars(_TOTALS))


class _ContextTooLong(Exception):
    def __init__(self, prompt_tokens: int, context_tokens: int):
        super().__init__(f"the prompt has {prompt_tokens} tokens and the answer may need more than the "
                         f"{context_tokens}-token context leaves (set params: {{n_ctx: N}} or shorten the demos)")


def _chat_messages(request: Any) -> list[dict[str, str]]:
    messages = []
    if request.system is not None:
        system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
        messages.append({"role": "system", "content": system})
    for message in request.messages:
        role = "system" if message.role == "developer" else message.role
        messages.append({"role": role, "content": message.text or ""})
    return messages


def _schema_from_response_format(response_format: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The JSON schema a request's answer must fit, with local $refs inlined; None for free text."""
    if not response_format:
        return None
    if response_format.get("type") == "json_schema":
        return _inline_refs(response_format["schema"])
    if response_format.get("type") == "json_object":
        return {"type": "object"}
    return None


@lru_cache(maxsize=64)
def _grammar_text_for(schema_json: str) -> str:
    """GBNF for a schema, keys in the schema's order (sorting them forced alphabetical order on the answer)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    from promptops.models._plan import strict_strings

    return strict_strings(json_schema_to_gbnf(schema_json))


_FIELD_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")
_OUTPUT_REQUIREMENTS = "\n\nRespond with"


def content_free(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The same chat with every input field of the last user message replaced by "N/A" (DSPy's `[[ ## name ## ]]` layout).

    The output-format reminder stays: before the fields (promptops' adapter) or after them (DSPy's
    own, where the last "Respond with" paragraph is the reminder). DSPy writes an empty last field
    as a bare header, without the newline.
    """
    *earlier, last = messages
    content = last["content"]
    headers = list(_FIELD_HEADER.finditer(content))
    if not headers:
        return [*earlier, {**last, "content": "N/A"}]
    lead = content[: headers[0].start()]
    tail = ""
    if not lead.strip():  # the reminder, if any, comes after the fields
        tail_at = content.rfind(_OUTPUT_REQUIREMENTS)
        tail = content[tail_at:] if tail_at >= headers[-1].end() else ""
    blocks = [f"{header.group(0)}\nN/A" for header in headers]
    return [*earlier, {**last, "content": lead + "\n\n".join(blocks) + tail}]


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace local `$ref`s by their definitions: nested objects arrive as `$defs`."""
    definitions = {**schema.get("$defs", {}), **schema.get("definitions", {})}

    def resolve(node: Any, depth: int = 0) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/") and depth < 32:
                target = definitions.get(ref.rsplit("/", 1)[-1])
                if target is not None:
                    extra = {k: v for k, v in node.items() if k != "$ref"}
                    return resolve({**target, **extra}, depth + 1)
            return {k: resolve(v, depth) for k, v in node.items() if k not in ("$defs", "definitions")}
        if isinstance(node, list):
            return [resolve(item, depth) for item in node]
        return node

    return resolve(schema)
