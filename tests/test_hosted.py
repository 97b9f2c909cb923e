"""Hosted and served models go through DSPy's own engine: checked against a local
OpenAI-compatible server on 127.0.0.1 that answers like a real one."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

import promptops
from promptops import tracking

SECRET = "sk-local-test-key-0123456789"


class FakeOpenAI(BaseHTTPRequestHandler):
    answers: dict[str, str] = {}
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOpenAI.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        text = body["messages"][-1]["content"]
        label = next((label for word, label in self.answers.items() if word in text), "exchange_rate")
        payload = {
            "id": "chatcmpl-local", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": json.dumps({"intent": label})}}],
            "usage": {"prompt_tokens": 200, "completion_tokens": 10, "total_tokens": 210},
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def openai_server() -> Iterator[str]:
    FakeOpenAI.seen = []
    FakeOpenAI.answers = {"card": "card_arrival", "PIN": "change_pin", "pin": "change_pin"}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_an_openai_compatible_server_is_evaluated_priced_and_logged_without_the_key(
    project: Path, mlflow_store: str, openai_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    path = project / "prompts" / "banking_intent.yaml"
    path.write_text(path.read_text().replace(
        "  id: local/smollm2-135m",
        f"  id: openai/served-model\n  api_base: {openai_server}\n"
        "  price: {input_per_million_usd: 1.0, output_per_million_usd: 4.0}",
    ))
    result = promptops.evaluate("banking_intent", split="test", limit=6, threads=3)
    assert result.model == "openai/served-model"
    assert (result.n, result.model_calls, result.errors, result.parse_failures) == (6, 6, 0, 0)
    assert result.input_tokens == 6 * 200 and result.output_tokens == 6 * 10
    assert result.cost_usd == pytest.approx(6 * (200 * 1.0 + 10 * 4.0) / 1e6)
    assert len(FakeOpenAI.seen) == 6 and FakeOpenAI.seen[0]["auth"] == f"Bearer {SECRET}"
    assert FakeOpenAI.seen[0]["body"]["model"] == "served-model"

    run = tracking.load_run(result.run_id, root=project)
    logged = json.dumps({"params": run.data.params, "tags": run.data.tags})
    assert SECRET not in logged and run.data.params["model"] == "openai/served-model"

    again = promptops.evaluate("banking_intent", split="test", limit=6, track=False)
    assert (again.model_calls, again.cache_hits, len(FakeOpenAI.seen)) == (0, 6, 6)
    assert again.cost_usd == pytest.approx(result.cost_usd)
