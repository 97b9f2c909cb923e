"""A scripted DSPy engine for tests of logic around the model (pricing, caching, metering).

It answers every request with the JSON it is given and reports fixed token counts, so a test
can tell exactly what reached the "model" and what came from DSPy's cache.
"""

from __future__ import annotations

import json
from typing import Any


class ScriptedEngine:
    supports_response_schema = True
    supported_params = frozenset({"temperature", "max_tokens", "response_format"})

    def __init__(self, answer: dict[str, Any], input_tokens: int = 100, output_tokens: int = 10):
        self.answer = answer
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.requests: list[Any] = []

    def complete(self, request: Any) -> Any:
        from dspy.lm15 import Message, Response, TextPart, Usage

        self.requests.append(request)
        return Response(
            id=None,
            model="scripted",
            message=Message.assistant([TextPart(json.dumps(self.answer))]),
            finish_reason="stop",
            usage=Usage(input_tokens=self.input_tokens, output_tokens=self.output_tokens),
        )

    def stream(self, request: Any) -> Any:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        pass
