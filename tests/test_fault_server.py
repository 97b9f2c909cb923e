"""The fault server: plain HTTP first (no DSPy), then promptops itself against it.

The DSPy tests at the end pin down what the runtime's guardrails build on: how many HTTP
requests one call makes against a 500, that `timeout` in a prompt's model params cuts a hang,
and that an answer off the schema is a parse failure, not an error.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

import pytest

from promptops.testing import FaultRates, FaultServer, ServedRequest, default_answer, last_user_message

SECRET = "sk-fault-test-key-0123456789"

INTENT_SCHEMA = {
    "type": "object",
    "properties": {
        "intent": {"type": "string", "enum": ["card_arrival", "change_pin"]},
        "confidence": {"type": "number"},
        "urgent": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "where": {"$ref": "#/$defs/Place"},
    },
    "required": ["intent", "confidence", "urgent", "tags", "note", "where"],
    "$defs": {"Place": {"type": "object", "properties": {"city": {"type": "string"}, "floor": {"type": "integer"}},
                        "required": ["city", "floor"]}},
}


def chat_body(text: str = "My card has not arrived yet.", schema: Optional[dict] = INTENT_SCHEMA, **extra: Any) -> dict:
    body: dict[str, Any] = {"model": "fault-model", "messages": [
        {"role": "system", "content": "You route bank messages."},
        {"role": "user", "content": text},
    ], **extra}
    if schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "Answer", "schema": schema, "strict": True}}
    return body


def post(server: FaultServer, body: dict, *, timeout: float = 5.0, headers: Optional[dict] = None) -> tuple[int, dict, bytes]:
    """(status, headers, raw body) of one chat completion, errors included."""
    request = urllib.request.Request(
        f"{server.base_url}/chat/completions", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def content_of(raw: bytes) -> Any:
    return json.loads(json.loads(raw)["choices"][0]["message"]["content"])


def wait_for_log(server: FaultServer, n: int, within_s: float = 2.0) -> list[ServedRequest]:
    deadline = time.monotonic() + within_s
    while len(server.log) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return server.log


# -- plain HTTP -------------------------------------------------------------------------------


def test_an_answer_fits_the_requested_schema_and_reports_usage_like_a_real_server() -> None:
    with FaultServer() as server:
        assert server.base_url.startswith("http://127.0.0.1:") and server.base_url.endswith("/v1")
        status, _, raw = post(server, chat_body())
        with urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as response:
            models = json.loads(response.read())

    assert status == 200
    completion = json.loads(raw)
    assert completion["object"] == "chat.completion" and completion["model"] == "fault-model"
    assert content_of(raw) == {"intent": "card_arrival", "confidence": 0, "urgent": False, "tags": [], "note": "",
                               "where": {"city": "", "floor": 0}}
    characters = len("You route bank messages.") + len("My card has not arrived yet.")
    content = completion["choices"][0]["message"]["content"]
    assert completion["usage"] == {"prompt_tokens": characters // 4, "completion_tokens": len(content) // 4,
                                   "total_tokens": characters // 4 + len(content) // 4}
    assert [model["id"] for model in models["data"]] == ["fault-model"]
    assert server.log[0].fault == "ok" and server.log[0].prompt_tokens == characters // 4


def test_an_answer_callable_chooses_the_answer_and_the_key_is_never_kept() -> None:
    def by_keyword(body: dict) -> dict:
        return {**default_answer(INTENT_SCHEMA), "intent": "change_pin" if "PIN" in last_user_message(body) else "card_arrival"}

    with FaultServer(answer=by_keyword) as server:
        _, _, pin = post(server, chat_body("I forgot my PIN"), headers={"Authorization": f"Bearer {SECRET}"})
        _, _, card = post(server, chat_body("Where is my card?"))
        server.reset()
        _, _, unschemed = post(server, chat_body(schema=None))

    assert content_of(pin)["intent"] == "change_pin" and content_of(card)["intent"] == "card_arrival"
    assert content_of(unschemed)["intent"] == "card_arrival"  # no schema: the callable still answers
    assert [entry.has_authorization for entry in server.log] == [False]  # reset forgot the first two
    assert SECRET not in repr(server.requests) + repr(server.log)


def test_scripted_faults_come_first_in_order_then_the_rates_apply() -> None:
    script = ["server_error", "rate_limited", "malformed", "off_schema", "delay", "timeout"]
    with FaultServer(script=script, delay_s=0.2, hang_s=0.1, retry_after_s=2) as server:
        answers = [post(server, chat_body()) for _ in range(len(script) + 2)]
        latencies = [entry.latency_s for entry in server.log]
        counts = server.counts()

    server_error, rate_limited, malformed, off_schema, delay, slow_hang, ok, again = answers
    assert server_error[0] == 500 and json.loads(server_error[2])["error"]["type"] == "server_error"
    assert rate_limited[0] == 429 and rate_limited[1]["Retry-After"] == "2"
    assert json.loads(rate_limited[2])["error"]["code"] == "rate_limit_exceeded"
    assert malformed[0] == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(malformed[2])
    assert off_schema[0] == 200 and content_of(off_schema[2])["intent"] not in ("card_arrival", "change_pin")
    assert delay[0] == slow_hang[0] == 200 and latencies[4] >= 0.2 and latencies[5] >= 0.1
    assert content_of(delay[2]) == content_of(ok[2]) == content_of(again[2]) == default_answer(INTENT_SCHEMA)
    assert [entry.status for entry in server.log] == [500, 429, 200, 200, 200, 200, 200, 200]
    assert counts == {"server_error": 1, "rate_limited": 1, "malformed": 1, "off_schema": 1, "delay": 1, "timeout": 1, "ok": 2}


def test_off_schema_drops_a_required_field_without_an_enum_and_answers_prose_without_an_object() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    with FaultServer(script=["off_schema", "off_schema"], answer=lambda body: {"city": "Paris"}) as server:
        _, _, dropped = post(server, chat_body(schema=schema))
        server.answer = lambda body: "Paris"
        _, _, prose = post(server, chat_body(schema=schema))

    assert content_of(dropped) == {}
    text = json.loads(prose)["choices"][0]["message"]["content"]
    assert "Paris" not in text and not text.lstrip().startswith("{")


def test_seeded_rates_give_the_same_faults_run_after_run_even_with_concurrent_clients() -> None:
    rates = FaultRates(server_error=0.3, rate_limited=0.1, malformed=0.1, off_schema=0.1)

    def run() -> dict[str, int]:
        with FaultServer(rates, seed=42, retry_after_s=0) as server, ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: post(server, chat_body()), range(80)))
            assert len(server.log) == len(server.requests) == 80
            return server.counts()

    first, second = run(), run()
    assert first == second and sum(first.values()) == 80
    assert 12 <= first["server_error"] <= 36 and first["ok"] >= 20


def test_a_hang_is_cut_by_the_client_timeout_and_does_not_hold_up_shutdown() -> None:
    server = FaultServer(script=["timeout", "timeout"], hang_s=30).start()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=0.3)
    started = time.perf_counter()
    with pytest.raises(socket.timeout):
        connection.request("POST", "/v1/chat/completions", json.dumps(chat_body()), {"Content-Type": "application/json"})
        connection.getresponse()
    connection.close()
    assert time.perf_counter() - started < 1.0
    (gave_up,) = wait_for_log(server, 1)
    assert (gave_up.fault, gave_up.status) == ("timeout", 0) and gave_up.latency_s < 1.0  # the server noticed

    def wait_patiently() -> None:
        with pytest.raises(http.client.RemoteDisconnected):  # the server stopped before answering
            post(server, chat_body(), timeout=60)

    in_flight = threading.Thread(target=wait_patiently, daemon=True)
    in_flight.start()
    while len(server.requests) < 2:
        time.sleep(0.01)
    started = time.perf_counter()
    server.stop()
    assert time.perf_counter() - started < 1.0
    assert [entry.status for entry in server.log] == [0, 0]
    in_flight.join(timeout=1.0)
    assert not in_flight.is_alive()


def test_what_the_server_refuses_and_what_it_cannot_be_configured_to_do() -> None:
    with FaultServer(script=["server_error"]) as server:
        stream = post(server, chat_body(stream=True))
        wrong_path = urllib.request.Request(f"{server.base_url}/completions", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as not_found:
            urllib.request.urlopen(wrong_path, timeout=5)
        assert post(server, chat_body())[0] == 500  # the refused requests did not use up the script

    assert stream[0] == 400 and "stream" in json.loads(stream[2])["error"]["message"]
    assert not_found.value.code == 404
    assert server.counts() == {"bad_request": 2, "server_error": 1}
    with pytest.raises(ValueError, match="sum to 1.2"):
        FaultRates(server_error=0.7, timeout=0.5)
    with pytest.raises(ValueError, match="unknown fault"):
        FaultServer(script=["ok", "explode"])
    with pytest.raises(RuntimeError, match="not running"):
        FaultServer().base_url


# -- promptops and DSPy against it (these import DSPy: keep them few) ---------------------------

KEYWORDS = (("pay", "apple_pay_or_google_pay"), ("withdrawal", "cash_withdrawal_charge"), ("pin", "change_pin"),
            ("exchange", "exchange_rate"), ("card", "card_arrival"))


def intent_by_keyword(body: dict) -> dict:
    text = last_user_message(body, "text").lower()
    return {"intent": next((label for word, label in KEYWORDS if word in text), "terminate_account")}


def point_at(project: Path, server: FaultServer, params: str = "") -> None:
    """The example prompt, served by `server` at a price of 1 and 4 USD per million tokens."""
    example = Path(__file__).resolve().parent.parent / "prompts" / "banking_intent.yaml"
    (project / "prompts" / "banking_intent.yaml").write_text(example.read_text().replace(
        "  id: local/smollm2-135m",
        f"  id: openai/fault-model\n  api_base: {server.base_url}\n"
        "  price: {input_per_million_usd: 1.0, output_per_million_usd: 4.0}\n" + params,
    ))


@pytest.fixture()
def served(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    return project


def test_an_eval_counts_an_off_schema_answer_as_a_parse_failure_and_a_500_as_an_error(served: Path) -> None:
    import promptops

    script = ["ok", "off_schema", "server_error", "malformed", "ok", "ok"]
    with FaultServer(script=script, answer=intent_by_keyword) as server:
        point_at(served, server, "  params: {num_retries: 0}\n")
        result = promptops.evaluate("banking_intent", split="test", limit=6, threads=1, cache=False, track=False)

    assert (result.n, result.parse_failures, result.errors, result.model_calls) == (6, 1, 2, 4)
    assert result.score == pytest.approx(3 / 6)
    errors = [example.error for example in result.examples]
    assert "Server" in errors[2] and "500" in errors[2]
    assert errors[1] and "off_schema_label" in errors[1]
    answered = [entry for entry in server.log if entry.status == 200 and entry.completion_tokens]
    assert result.input_tokens == sum(entry.prompt_tokens for entry in answered)
    assert result.output_tokens == sum(entry.completion_tokens for entry in answered)
    assert result.cost_usd == pytest.approx((result.input_tokens * 1.0 + result.output_tokens * 4.0) / 1e6)
    assert all(entry.has_authorization for entry in server.log) and SECRET not in repr(server.requests)
    assert "response_format" not in server.requests[0]  # DSPy asks for the fields in its system message instead


def test_one_dspy_call_makes_four_requests_against_a_500_by_default_and_one_with_no_retries(served: Path) -> None:
    import dspy

    import promptops
    from promptops.program import build_program

    with FaultServer(FaultRates(server_error=1.0)) as server:
        point_at(served, server)
        program = build_program(promptops.load_prompt("banking_intent"), cache=False)
        started = time.perf_counter()
        with pytest.raises(dspy.LMServerError):
            program(text="My card has not arrived yet.")
        default_s = time.perf_counter() - started
        default_requests = len(server.requests)

        server.reset()
        point_at(served, server, "  params: {num_retries: 0}\n")
        program = build_program(promptops.load_prompt("banking_intent"), cache=False)
        with pytest.raises(dspy.LMError):
            program(text="My card has not arrived yet.")
        no_retry_requests = len(server.requests)

        server.reset(script=["rate_limited", "ok"], rates=FaultRates())
        server.retry_after_s = 0
        point_at(served, server, "  params: {num_retries: 1}\n")
        program = build_program(promptops.load_prompt("banking_intent"), cache=False)
        assert program(text="My card has not arrived yet.").intent == "card_arrival"  # the first label
        after_429 = server.counts()

    assert default_requests == 4 and 6.5 < default_s < 10  # DSPy's backoff between them: 1 + 2 + 4 s
    assert no_retry_requests == 1
    assert after_429 == {"rate_limited": 1, "ok": 1}  # Retry-After: 0 is honoured, no backoff


def test_timeout_in_the_model_params_cuts_a_hang(served: Path) -> None:
    import dspy

    import promptops
    from promptops.program import build_program

    with FaultServer(script=["timeout"], hang_s=30) as server:
        point_at(served, server, "  params: {timeout: 1, num_retries: 0}\n")
        program = build_program(promptops.load_prompt("banking_intent"), cache=False)
        started = time.perf_counter()
        with pytest.raises(dspy.LMError) as raised:
            program(text="My card has not arrived yet.")
        waited_s = time.perf_counter() - started
        (hung,) = wait_for_log(server, 1)

    # DSPy's own engine reports a read timeout as a transport error; both are retried unless num_retries is 0.
    assert 0.9 < waited_s < 3 and isinstance(raised.value, dspy.LMTransportError) and dspy.is_retryable_lm_error(raised.value)
    assert (hung.fault, hung.status) == ("timeout", 0)


def test_the_litellm_engine_makes_as_many_requests_and_takes_the_same_timeout(served: Path) -> None:
    """A prompt whose params need LiteLLM (here `engine: litellm`; also e.g. `headers`) gets the same guardrail facts."""
    import dspy

    import promptops
    from promptops.program import build_program

    with FaultServer(script=["server_error", "timeout"], hang_s=30) as server:
        point_at(served, server, "  params: {engine: litellm, timeout: 1, num_retries: 0}\n")
        program = build_program(promptops.load_prompt("banking_intent"), cache=False)
        with pytest.raises(dspy.LMServerError):
            program(text="My card has not arrived yet.")
        started = time.perf_counter()
        with pytest.raises(dspy.LMTimeoutError):
            program(text="My card has not arrived yet.")
        waited_s = time.perf_counter() - started

    assert len(server.requests) == 2 and 0.9 < waited_s < 3
