"""A fault-injecting OpenAI-compatible server on 127.0.0.1, for tests and guardrail benchmarks.

`POST /v1/chat/completions` answers like a real server (JSON that fits the request's schema,
token usage) or, per request, injects a fault a production runtime must survive: a slow answer,
a hang, a 5xx, a 429 with Retry-After, a body that is not JSON, an answer that breaks the schema.
Faults come from a script first, then from seeded rates, so a run can be repeated exactly.
Streaming is refused with a 400: the runtime under test calls without `stream`.
`POST /v1/embeddings` answers with bag-of-words vectors (texts sharing words point the same way),
not normalized, with the same faults; an off-schema answer is one vector short.
Standard library only; nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import json
import random
import re
import select
import socket
import sys
import threading
import time
import zlib
from collections import Counter, deque
from dataclasses import dataclass, fields, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Optional, Union

FAULTS = ("ok", "delay", "timeout", "server_error", "malformed", "off_schema", "rate_limited")
BAD_REQUEST = "bad_request"  # logged for a request the server refuses (wrong path, not JSON, stream)

Answer = Callable[[dict], Union[dict, str]]

_POLL_S = 0.05  # how often a sleeping handler checks for shutdown and for a client that hung up
_DSPY_OUTPUTS = "Outputs will be a JSON object with the following fields."
_DSPY_NOTE = re.compile(r"#\s*note: the value you produce (.*)$", re.DOTALL)
_OFF_SCHEMA_LABEL = "off_schema_label"
_PROSE = "I am not sure what you mean; could you tell me a little more about it?"
EMBEDDING_DIMENSIONS = 16  # of /v1/embeddings' vectors, unless the request asks for `dimensions`


@dataclass(frozen=True)
class FaultRates:
    """Fractions of requests that get each fault; the rest are answered normally."""

    delay: float = 0.0
    timeout: float = 0.0
    server_error: float = 0.0
    malformed: float = 0.0
    off_schema: float = 0.0
    rate_limited: float = 0.0

    def __post_init__(self) -> None:
        for name, rate in self.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate {name}={rate!r} must be between 0 and 1")
        total = sum(rate for _, rate in self.items())
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault rates sum to {total:g}; they must sum to at most 1 (the rest are ok answers)")

    def items(self) -> list[tuple[str, float]]:
        return [(field.name, getattr(self, field.name)) for field in fields(self)]

    def choose(self, draw: float) -> str:
        """The fault for a uniform draw in [0, 1)."""
        cumulative = 0.0
        for name, rate in self.items():
            cumulative += rate
            if draw < cumulative:
                return name
        return "ok"


@dataclass(frozen=True)
class ServedRequest:
    """One chat-completion or embeddings request as the server handled it."""

    fault: str  # one of FAULTS, or "bad_request"
    model: str
    latency_s: float  # from arrival to the last byte sent, or to giving up
    status: int  # the HTTP status sent; 0 when nothing was sent (the client hung up or the server stopped)
    prompt_tokens: int  # as reported in `usage`; 0 when no completion was sent
    completion_tokens: int
    has_authorization: bool  # whether an Authorization header came; its value is never kept


class FaultServer:
    """An OpenAI-compatible chat-completions server that injects faults; use it as a context manager.

        with FaultServer(FaultRates(server_error=0.1), seed=7) as server:
            call_the_model(api_base=server.base_url)
            server.counts()  # {"ok": 91, "server_error": 9}

    Each request takes the next name of `script`, then a fault drawn from `rates` with a
    `random.Random(seed)`. Answers fit the request's `response_format` JSON schema or, without
    one, the output fields DSPy's JSONAdapter lists in its system message; `answer(body)`
    chooses the answer instead (a dict sent as JSON, or a string sent as it is).
    """

    def __init__(
        self,
        rates: Optional[FaultRates] = None,
        *,
        script: Iterable[str] = (),
        seed: int = 0,
        answer: Optional[Answer] = None,
        delay_s: float = 0.2,
        hang_s: float = 30.0,
        server_error_status: int = 500,
        retry_after_s: int = 1,
        models: Iterable[str] = ("fault-model",),
    ):
        if delay_s < 0 or hang_s < 0:
            raise ValueError("delay_s and hang_s must not be negative")
        if not 500 <= server_error_status <= 599:
            raise ValueError(f"server_error_status {server_error_status} is not a 5xx status")
        if isinstance(retry_after_s, bool) or not isinstance(retry_after_s, int) or retry_after_s < 0:
            raise ValueError("retry_after_s must be a whole number of seconds, as the Retry-After header carries")
        self.rates = rates or FaultRates()
        self.seed = seed
        self.answer = answer
        self.delay_s = delay_s
        self.hang_s = hang_s
        self.server_error_status = server_error_status
        self.retry_after_s = retry_after_s
        self.models = tuple(models)
        self._initial_script = _checked_script(script)
        self._initial_rates = self.rates
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._stopping = threading.Event()
        self._httpd: Optional[_HTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._sequence = 0
        self._random = random.Random(seed)
        self._script: deque[str] = deque(self._initial_script)
        self._log: list[ServedRequest] = []
        self._requests: list[dict] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "FaultServer":
        if self._httpd is not None:
            raise RuntimeError("this FaultServer is already running")
        self._stopping.clear()
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.fault_server = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": _POLL_S},
            name=f"fault-server-{self.port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; a handler asleep in a delay or a hang gives up at once (≤ 1 s in all)."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        with self._idle:  # so the log is complete when stop returns
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=1.0)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> "FaultServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the FaultServer is not running: use it in a `with` block or call start()")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """What a client takes as `api_base`."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- what happened -----------------------------------------------------------------------

    @property
    def log(self) -> list[ServedRequest]:
        """The handled chat-completion and embedding requests, in the order they finished (a copy)."""
        with self._lock:
            return list(self._log)

    @property
    def requests(self) -> list[dict]:
        """The JSON bodies received, in the order they arrived (a copy); headers are not kept."""
        with self._lock:
            return list(self._requests)

    def counts(self) -> dict[str, int]:
        """How many handled requests got each fault (only the faults that occurred)."""
        return dict(Counter(entry.fault for entry in self.log))

    def reset(self, *, script: Optional[Iterable[str]] = None, rates: Optional[FaultRates] = None) -> None:
        """Forget what happened and start again from the seed, with the given (or the first) script and rates."""
        with self._lock:
            self._log.clear()
            self._requests.clear()
            self._random = random.Random(self.seed)
            self._script = deque(self._initial_script if script is None else _checked_script(script))
            self.rates = rates or self._initial_rates

    # -- used by the handler -----------------------------------------------------------------

    def _next_fault(self) -> tuple[str, int]:
        with self._lock:
            self._sequence += 1
            fault = self._script.popleft() if self._script else self.rates.choose(self._random.random())
            return fault, self._sequence

    def _received(self, body: dict) -> None:
        with self._lock:
            self._requests.append(body)
            self._in_flight += 1

    def _record(self, entry: ServedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    def _record_lost(self, entry: ServedRequest) -> None:
        """The answer logged for `entry` never reached the client."""
        with self._lock:
            for index, logged in enumerate(self._log):
                if logged is entry:
                    self._log[index] = replace(entry, status=0)

    def _done(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() waits for in-flight requests itself, with a bound
    request_queue_size = 128  # socketserver's 5 makes concurrent clients wait 1 s for a SYN retry
    fault_server: FaultServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # a client that gave up is part of the game
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "promptops-fault-server"
    timeout = 10  # a connection that never sends its request does not keep a thread forever

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.rstrip("/") != "/v1/models":
            status, payload, _, _ = _error_reply(404, f"no route GET {self.path}", code="not_found")
            self._send_bytes(status, payload)
            return
        models = [{"id": model, "object": "model", "created": 0, "owned_by": "promptops"} for model in self.server.fault_server.models]
        self._send_bytes(200, json.dumps({"object": "list", "data": models}).encode())

    def do_POST(self) -> None:  # noqa: N802
        started = time.perf_counter()
        fault_server = self.server.fault_server
        has_authorization = "Authorization" in self.headers

        def answer(fault: str, model: str, reply: Optional[_Reply]) -> None:
            """Log, then send: a client holding its answer always finds it in the log."""
            status, payload, headers, usage = reply or (0, b"", {}, (0, 0))
            entry = ServedRequest(fault, model, time.perf_counter() - started, status, *usage, has_authorization)
            fault_server._record(entry)
            if reply is not None and not self._send_bytes(status, payload, headers):
                fault_server._record_lost(entry)

        if self.path.rstrip("/") not in ("/v1/chat/completions", "/v1/embeddings"):
            answer(BAD_REQUEST, "", _error_reply(404, f"no route POST {self.path}; the server answers POST /v1/chat/completions and /v1/embeddings"))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
        except (ValueError, OSError):
            body = None
        if not isinstance(body, dict):
            answer(BAD_REQUEST, "", _error_reply(400, "the request body must be a JSON object"))
            return
        model = str(body.get("model", ""))
        fault_server._received(body)
        try:
            if body.get("stream"):
                answer(BAD_REQUEST, model, _error_reply(400, "FaultServer does not stream; send the request without `stream: true`"))
                return
            fault, sequence = fault_server._next_fault()
            reply: Optional[_Reply] = None
            try:
                reply = self._reply(fault, body, sequence)
            finally:
                answer(fault, model, reply)
        finally:
            fault_server._done()

    def _reply(self, fault: str, body: dict, sequence: int) -> Optional["_Reply"]:
        """The response for `fault`, or None when the client hung up or the server stopped first."""
        fault_server = self.server.fault_server
        model = str(body.get("model", ""))
        if fault == "server_error":
            status = fault_server.server_error_status
            return _error_reply(status, f"The server had an error while processing your request ({status}, injected).", "server_error")
        if fault == "rate_limited":
            seconds = fault_server.retry_after_s
            reply = _error_reply(429, f"Rate limit reached for {model}. Please try again in {seconds}s.", "requests", "rate_limit_exceeded")
            return reply[0], reply[1], {"Retry-After": str(seconds)}, reply[3]
        if fault == "malformed":
            cut = b'{"id": "chatcmpl-fault-%d", "object": "chat.completion", "choices": [{"index": 0, "message": {"content": "' % sequence
            return 200, cut, {}, (0, 0)
        if fault == "delay" and not self._wait(fault_server.delay_s):
            return None
        if fault == "timeout" and not self._wait(fault_server.hang_s):
            return None
        if self.path.rstrip("/") == "/v1/embeddings":
            return _embeddings_reply(body, sequence, off_schema=fault == "off_schema")
        try:
            content = _content(body, fault_server.answer, off_schema=fault == "off_schema")
        except Exception as exc:  # a broken `answer` callable is the test's bug: say so to the client
            return _error_reply(500, f"the answer callable raised {type(exc).__name__}: {exc}", "server_error", "answer_failed")
        usage = (max(1, _message_characters(body) // 4), max(1, len(content) // 4))
        completion = {
            "id": f"chatcmpl-fault-{sequence}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
        }
        return 200, json.dumps(completion).encode(), {}, usage

    def _wait(self, seconds: float) -> bool:
        """Sleep `seconds`; False as soon as the server stops or the client hangs up."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self.server.fault_server._stopping.wait(min(remaining, _POLL_S)) or self._client_left():
                return False
        return True

    def _client_left(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _send_bytes(self, status: int, data: bytes, headers: Optional[dict[str, str]] = None) -> bool:
        """Send a whole response; False when the client is gone."""
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except (ConnectionError, TimeoutError, OSError):
            self.close_connection = True
            return False


_Reply = tuple[int, bytes, dict, tuple[int, int]]  # status, body, extra headers, (prompt, completion) tokens


def _error_reply(status: int, message: str, kind: str = "invalid_request_error", code: Optional[str] = None) -> _Reply:
    """An OpenAI-style error body."""
    error = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return status, json.dumps(error).encode(), {}, (0, 0)


def _embeddings_reply(body: dict, sequence: int, *, off_schema: bool) -> _Reply:
    """An OpenAI-style embeddings response: per text, its words hashed into `dimensions` counts."""
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    dimensions = body.get("dimensions") or EMBEDDING_DIMENSIONS
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts) or not isinstance(dimensions, int) or dimensions < 1:
        return _error_reply(400, "`input` must be a string or a list of strings, and `dimensions` a positive integer")
    vectors = []
    for text in texts:
        vector = [0.0] * dimensions
        for word in re.findall(r"\w+", text.lower()):
            vector[zlib.crc32(word.encode()) % dimensions] += 1.0
        vectors.append(vector)
    data = [{"object": "embedding", "index": index, "embedding": vector} for index, vector in enumerate(vectors)]
    tokens = max(1, sum(len(text) for text in texts) // 4)
    payload = {"object": "list", "id": f"embd-fault-{sequence}", "model": str(body.get("model", "")),
               "data": data[:-1] if off_schema else data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return 200, json.dumps(payload).encode(), {}, (tokens, 0)


def _checked_script(script: Iterable[str]) -> tuple[str, ...]:
    names = tuple(script)
    unknown = sorted(set(names) - set(FAULTS))
    if unknown:
        raise ValueError(f"unknown fault name(s) {unknown} in script; use {', '.join(FAULTS)}")
    return names


# -- answers ----------------------------------------------------------------------------------


def last_user_message(body: dict, field: Optional[str] = None) -> str:
    """The text of the request's last user message, or of one DSPy input field (`[[ ## field ## ]]`) in it.

    For an `answer` callable: DSPy's last user message also lists the output labels, so match
    keywords in the input field, not in the whole message.
    """
    text = next((_text_of(m.get("content")) for m in reversed(body.get("messages") or []) if m.get("role") == "user"), "")
    if field is not None:
        match = re.search(rf"\[\[ ## {re.escape(field)} ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond with|\Z)", text, re.DOTALL)
        if match:
            return match.group(1).strip()
    return text


def request_schema(body: dict) -> Optional[dict]:
    """The JSON schema an answer must fit: the `response_format` one, else the fields DSPy's JSONAdapter asks for."""
    response_format = body.get("response_format") or {}
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            return schema
    for message in body.get("messages") or []:
        text = _text_of(message.get("content"))
        start = text.find(_DSPY_OUTPUTS)
        brace = text.find("{", start) if start >= 0 else -1
        if brace < 0:
            continue
        try:
            template, _ = json.JSONDecoder().raw_decode(text, brace)
        except ValueError:
            continue
        if isinstance(template, dict):
            properties = {name: _schema_from_dspy_note(value) for name, value in template.items()}
            return {"type": "object", "properties": properties, "required": list(properties)}
    return None


def default_answer(schema: Optional[dict]) -> Any:
    """The plainest value that fits `schema`: the first enum value, "" / 0 / false / [] by type, objects by required property."""
    return _plain_value(schema or {"type": "object"}, schema or {}, depth=0)


def _schema_from_dspy_note(value: Any) -> dict:
    """A field schema from JSONAdapter's template line, e.g. "{intent}  # note: the value you produce must be one of: a; b"."""
    match = _DSPY_NOTE.search(value) if isinstance(value, str) else None
    note = match.group(1).strip() if match else ""
    if "must adhere to the JSON schema:" in note:
        try:
            return json.loads(note.split("must adhere to the JSON schema:", 1)[1])
        except ValueError:
            return {}
    if "one of:" in note:
        return {"enum": [label.strip() for label in note.split("one of:", 1)[1].split(";")]}
    if note == "must be True or False":
        return {"type": "boolean"}
    if note == "must be a single int value":
        return {"type": "integer"}
    if note == "must be a single float value":
        return {"type": "number"}
    return {"type": "string"}


def _resolve(schema: dict, root: dict) -> dict:
    while isinstance(schema.get("$ref"), str) and schema["$ref"].startswith("#/"):
        target: Any = root
        for part in schema["$ref"][2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        schema = target if isinstance(target, dict) else {}
    return schema


def _plain_value(schema: dict, root: dict, depth: int) -> Any:
    schema = _resolve(schema, root)
    if depth > 32:
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [_resolve(option, root) for option in schema.get(key) or []]
        if options:
            chosen = next((option for option in options if option.get("type") != "null"), options[0])
            return _plain_value(chosen, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        required = schema.get("required", list(properties))
        return {name: _plain_value(properties.get(name, {}), root, depth + 1) for name in required}
    return {"string": "", "integer": 0, "number": 0, "boolean": False, "array": [], "null": None}.get(kind, "")


def _content(body: dict, answer: Optional[Answer], *, off_schema: bool) -> str:
    schema = request_schema(body)
    value = answer(body) if answer is not None else default_answer(schema)
    if off_schema:
        value = _break_schema(value, _resolve(schema or {}, schema or {}))
    return value if isinstance(value, str) else json.dumps(value)


def _break_schema(value: Any, schema: dict) -> Any:
    """An answer that fails the schema: a label outside an enum, else a missing field, else prose."""
    if not isinstance(value, dict) or not value:
        return _PROSE
    properties = schema.get("properties") or {}
    for name, prop in properties.items():
        labels = _resolve(prop, schema).get("enum")
        if labels and name in value:
            return {**value, name: _OFF_SCHEMA_LABEL if _OFF_SCHEMA_LABEL not in labels else f"not_{_OFF_SCHEMA_LABEL}"}
    required = [name for name in schema.get("required", list(properties)) if name in value]
    missing = required[0] if required else next(iter(value))
    return {key: item for key, item in value.items() if key != missing}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _message_characters(body: dict) -> int:
    return sum(len(_text_of(message.get("content"))) for message in body.get("messages") or [])
