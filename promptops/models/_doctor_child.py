"""The child side of `promptops doctor`: load one embedded model and make one constrained call.

It runs in a process of its own, so a crash inside llama.cpp (a segfault, an illegal
instruction) kills only this process. It reports as it goes, one JSON object a line, flushed at
once, so the parent knows how far it got and what the build reported before any crash:

    {"event": "system", "llama_cpp_version": ..., "system_info": ...}
    {"event": "loaded", "load_s": ...}
    {"event": "answered", "seconds": ..., "output_tokens": ..., "answer": ...}
    {"event": "error", "kind": "unavailable" | "failed", "message": ...}

    python -m promptops.models._doctor_child local/smollm2-135m
"""

from __future__ import annotations

import json
import sys
import time

# One short call whose answer the grammar pins to two labels.
QUESTION = "Is the sky blue on a clear day? Answer yes or no."
ANSWER_SCHEMA = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"]}


def _report(**event: object) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main(model_id: str) -> int:
    from promptops.errors import PromptopsError
    from promptops.models._catalog import local_model

    try:
        path = local_model(model_id).locate()
    except PromptopsError as exc:
        _report(event="error", kind="unavailable", message=str(exc))
        return 3
    try:
        import llama_cpp
    except ImportError:
        _report(event="error", kind="unavailable", message="llama-cpp-python is not installed: make install, or pip install llama-cpp-python")
        return 3
    info = llama_cpp.llama_print_system_info()
    _report(event="system", llama_cpp_version=getattr(llama_cpp, "__version__", "unknown"),
            system_info=info.decode(errors="replace") if isinstance(info, bytes) else str(info))

    from promptops.models._llama_engine import _grammar_for, load_llama

    started = time.perf_counter()
    loaded = load_llama(path)
    _report(event="loaded", load_s=round(time.perf_counter() - started, 3))

    grammar = _grammar_for(json.dumps(ANSWER_SCHEMA))

    def call() -> dict:
        return loaded.llama.create_chat_completion(
            messages=[{"role": "user", "content": QUESTION}], grammar=grammar, max_tokens=16, temperature=0.0, seed=0
        )

    started = time.perf_counter()
    completion = loaded.run(call)
    seconds = time.perf_counter() - started
    content = completion["choices"][0]["message"].get("content") or ""
    try:
        answer = json.loads(content)["answer"]
    except (ValueError, KeyError, TypeError):
        _report(event="error", kind="failed", message=f"answered {content[:80]!r}, which does not fit the grammar it was given")
        return 4
    _report(event="answered", seconds=round(seconds, 3), answer=answer,
            output_tokens=(completion.get("usage") or {}).get("completion_tokens"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
