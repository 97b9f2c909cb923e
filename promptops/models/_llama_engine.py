"""The embedded model: a DSPy engine that runs a GGUF file in-process with llama.cpp.

DSPy 3.4 drives custom backends through `dspy.LM(model, engine=...)`: the engine turns one
`dspy.lm15.Request` into one `Response`, and DSPy keeps owning the cache, retries and history.
Calls through an engine are cached by DSPy; a `BaseLM.forward()` subclass would not be.

Weak local models rarely follow DSPy's output format on their own, so a JSON schema in the
request becomes a llama.cpp grammar: the model can only emit JSON that fits the schema.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from promptops.errors import ModelUnavailableError

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

    def run(self, function: Callable[[], Any]) -> Any:
        return self.worker.submit(function).result()


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
    """Compiling a schema into a grammar takes milliseconds; a search asks for the same few many times."""
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_json_schema(schema_json, verbose=False)


_JSON_OBJECT_SCHEMA = json.dumps({"type": "object"})


class LlamaEngine:
    """Runs chat requests on one GGUF file; declares structured output so DSPy's JSONAdapter sends a schema."""

    supports_response_schema = True
    supports_function_calling = False
    supports_reasoning = False
    supported_params = frozenset({"temperature", "max_tokens", "top_p", "top_k", "stop", "seed", "response_format"})

    def __init__(self, model_id: str, path: str | Path, context_tokens: int = DEFAULT_CONTEXT_TOKENS):
        self.model_id = model_id
        self.path = Path(path)
        self.context_tokens = context_tokens
        self.calls = 0  # requests that reached llama.cpp (cache hits never get here)

    def complete(self, request: Any) -> Any:
        from dspy.clients.engines.base import validate_request
        from dspy.lm15 import Message, Response, TextPart, Usage

        validate_request(request)
        messages = _chat_messages(request)
        config = request.config
        options: dict[str, Any] = {
            "temperature": 0.0 if config.temperature is None else config.temperature,
            "max_tokens": config.max_tokens or 256,
            "seed": 0 if config.seed is None else config.seed,
        }
        if config.top_p is not None:
            options["top_p"] = config.top_p
        if config.top_k is not None:
            options["top_k"] = config.top_k
        if config.stop:
            options["stop"] = list(config.stop)
        grammar = _grammar_from_response_format(config.response_format)
        if grammar is not None:
            options["grammar"] = grammar

        loaded = load_llama(self.path, self.context_tokens)

        def generate() -> tuple[dict[str, Any], float]:
            started = time.perf_counter()
            completion = loaded.llama.create_chat_completion(messages=messages, **options)
            return completion, time.perf_counter() - started

        try:
            completion, latency_s = loaded.run(generate)
        except ValueError as exc:  # llama.cpp reports a prompt longer than the context this way
            from dspy.lm15 import ContextLengthError

            raise ContextLengthError(f"{self.model_id}: {exc}") from None
        with _MODELS_LOCK:
            self.calls += 1

        choice = completion["choices"][0]
        usage = completion.get("usage") or {}
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        return Response(
            id=None,
            model=self.model_id,
            message=Message.assistant([TextPart(choice["message"].get("content") or "")]),
            finish_reason=finish,
            usage=Usage(input_tokens=usage.get("prompt_tokens"), output_tokens=usage.get("completion_tokens")),
            # Kept in DSPy's cache with the answer, so a cache hit still knows what the call cost in time.
            provider_data={"promptops": {"latency_s": latency_s, "grammar": grammar is not None}},
        )

    def stream(self, request: Any) -> Any:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        """Models are shared per process and outlive any one LM; nothing to release here."""


def _chat_messages(request: Any) -> list[dict[str, str]]:
    messages = []
    if request.system is not None:
        system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
        messages.append({"role": "system", "content": system})
    for message in request.messages:
        role = "system" if message.role == "developer" else message.role
        messages.append({"role": role, "content": message.text or ""})
    return messages


def _grammar_from_response_format(response_format: dict[str, Any] | None) -> Any:
    if not response_format:
        return None
    if response_format.get("type") == "json_schema":
        schema = _inline_refs(response_format["schema"])
        return _grammar_for(json.dumps(schema, sort_keys=True))
    if response_format.get("type") == "json_object":
        return _grammar_for(_JSON_OBJECT_SCHEMA)
    return None


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
