"""Real-shaped secrets and look-alikes that are not secrets, for the secret scrubber's tests and benchmark.

Every secret is made here, at run time, from a seeded random generator in the shape its issuer uses (a Stripe
live key, a HuggingFace token, a JWT, a PEM private key...): none is real, and the repository holds no literal
that a secret scanner or a push protection would flag. The look-alikes are what promptops logs every day and
must keep: commit SHAs, content hashes, run and trace ids, UUIDs, base64 of plain words, long identifiers,
model names, URLs without credentials, "password" in prose without a value, JSON of labels.

    from promptops.testing import lookalike_samples, secret_samples

    for sample in secret_samples():
        assert sample.secret not in redact(sample.text)
"""

from __future__ import annotations

import base64
import json
import random
import string
from dataclasses import dataclass
from typing import Callable

LETTERS = string.ascii_letters
ALNUM = string.ascii_letters + string.digits
LOWER_ALNUM = string.ascii_lowercase + string.digits
URL_SAFE = ALNUM + "_-"
BASE64 = ALNUM + "+/"
HEX = "0123456789abcdef"


@dataclass(frozen=True)
class SecretSample:
    """A text holding one secret: its kind, the text as it would reach a log, and the secret itself."""

    kind: str
    text: str
    secret: str


@dataclass(frozen=True)
class Lookalike:
    """A text that holds no secret and must come out of the scrubber unchanged."""

    kind: str
    text: str


def _random(rng: random.Random, alphabet: str, length: int, *, classes: tuple[str, ...] = ()) -> str:
    """`length` characters of `alphabet`, with at least one of each of `classes` (as real keys have)."""
    while True:
        text = "".join(rng.choice(alphabet) for _ in range(length))
        if all(any(char in group for char in text) for group in classes):
            return text


def _password(rng: random.Random) -> str:
    """A password as people choose them: a word, digits and a symbol, or random characters."""
    words = ["Hunter", "Summer", "Dragon", "Monkey", "Shadow", "Falcon", "Rocket", "Velvet", "Orchid", "Tundra"]
    if rng.random() < 0.5:
        return f"{rng.choice(words)}{rng.randint(10, 9999)}{rng.choice('!#$%&*?')}"
    return _random(rng, ALNUM + "!#$%&*?@^", rng.randint(12, 20), classes=(string.ascii_lowercase, string.ascii_uppercase,
                                                                        string.digits))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _jwt(rng: random.Random) -> str:
    header = {"alg": rng.choice(["HS256", "RS256"]), "typ": "JWT"}
    payload = {"sub": f"user-{rng.randint(1000, 99999)}", "iat": rng.randint(1_700_000_000, 1_800_000_000),
               "scope": rng.choice(["read", "read write", "admin"])}
    signature = bytes(rng.getrandbits(8) for _ in range(32))
    return ".".join([_b64url(json.dumps(header).encode()), _b64url(json.dumps(payload).encode()), _b64url(signature)])


def _pem(rng: random.Random) -> str:
    body = base64.b64encode(bytes(rng.getrandbits(8) for _ in range(192))).decode()
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    kind = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY"])
    return f"-----BEGIN {kind}-----\n{lines}\n-----END {kind}-----"


# kind → how a secret of that kind is made, and sentences it turns up in ({s} is the secret).
_KINDS: dict[str, tuple[Callable[[random.Random], str], tuple[str, ...]]] = {
    "openai-project-key": (
        lambda rng: "sk-proj-" + _random(rng, URL_SAFE, 74) + "T3BlbkFJ" + _random(rng, URL_SAFE, 74),
        ("Error code: 401 - Incorrect API key provided: {s}.", "I pasted {s} into the prompt by mistake")),
    "openai-legacy-key": (
        lambda rng: "sk-" + _random(rng, ALNUM, 48, classes=(string.ascii_uppercase, string.digits)),
        ("litellm.AuthenticationError: key {s} was revoked", "use {s} for the staging run")),
    "anthropic-api-key": (
        lambda rng: "sk-ant-api03-" + _random(rng, URL_SAFE, 93) + "AA",
        ("x-api-key {s} is invalid", "export KEY={s}")),
    "stripe-secret-key": (
        lambda rng: rng.choice(["sk_live_", "rk_live_", "sk_test_"])
        + _random(rng, ALNUM, rng.randint(24, 99), classes=(string.digits,)),
        ("Charge failed for key {s}.", "My Stripe key is {s}, can you check the refund?")),
    "huggingface-token": (
        lambda rng: "hf_" + _random(rng, LETTERS, 34, classes=(string.ascii_lowercase, string.ascii_uppercase)),
        ("huggingface-cli login --token {s}", "401 Client Error for token {s}")),
    "slack-bot-token": (
        lambda rng: f"xoxb-{_random(rng, string.digits, 12)}-{_random(rng, string.digits, 13)}-{_random(rng, ALNUM, 24)}",
        ("slack_sdk.errors.SlackApiError: invalid_auth for {s}", "post it with {s} please")),
    "google-api-key": (
        lambda rng: "AIza" + _random(rng, URL_SAFE, 35, classes=(string.digits, string.ascii_uppercase)),
        ("https://maps.googleapis.com/maps/api/geocode/json?address=London&key={s}", "the Gemini key {s} hit its quota")),
    "jwt": (
        _jwt,
        ("Authorization failed for session {s}", '{{"session": "{s}", "user": "ada"}}')),
    "aws-access-key-id": (
        lambda rng: "AKIA" + _random(rng, string.ascii_uppercase + "234567", 16),
        ("botocore.exceptions.ClientError: InvalidAccessKeyId {s}", "aws configure set aws_access_key_id {s}")),
    "github-token": (
        lambda rng: rng.choice(["ghp_", "gho_", "ghs_"]) + _random(rng, ALNUM, 36, classes=(string.digits,)),
        ("git push https://github.com/acme/app.git with token {s} failed", "GITHUB_TOKEN is {s}")),
    "gitlab-token": (
        lambda rng: "glpat-" + _random(rng, URL_SAFE, 20, classes=(string.digits, string.ascii_uppercase)),
        ("gitlab: 401 Unauthorized ({s})", "clone with {s}")),
    "sendgrid-api-key": (
        lambda rng: "SG." + _random(rng, URL_SAFE, 22) + "." + _random(rng, URL_SAFE, 43),
        ("python_http_client.exceptions.UnauthorizedError: {s}", "mail via {s}")),
    "npm-token": (
        lambda rng: "npm_" + _random(rng, LOWER_ALNUM, 36, classes=(string.digits,)),
        ("npm ERR! 403 for token {s}", "//registry.npmjs.org/:_authToken={s}")),
    "private-key": (
        _pem,
        ("{s}", "the deploy key:\n{s}\nkeep it safe")),
    "password-assignment": (
        _password,
        ("psycopg.OperationalError: connection failed: user=app password={s} host=db", "login with user=ada&password={s}")),
    "pwd-colon": (
        _password,
        ("db settings -> host: db.internal, pwd: {s}", "ftp user: backup pwd: {s}")),
    "password-json": (
        _password,
        ('{{"username": "ada", "password": "{s}"}}', "{{'db_password': '{s}', 'port': 5432}}")),
    "url-credentials": (
        lambda rng: _random(rng, ALNUM + "-._~", rng.randint(10, 20), classes=(string.digits,)),  # as a URL holds one
        ("could not connect to postgresql://app:{s}@db.internal:5432/prod", "redis://default:{s}@cache:6379/0 refused")),
    "bearer-token": (
        lambda rng: _random(rng, URL_SAFE + ".", 40, classes=(string.digits, string.ascii_uppercase)),
        ("Authorization: Bearer {s}", "curl -H 'Authorization: Bearer {s}' https://api.example.com")),
    "client-secret": (
        lambda rng: _random(rng, URL_SAFE + "~.", 34, classes=(string.digits,)),
        ('{{"client_id": "web", "client_secret": "{s}"}}', "OAUTH_CLIENT_SECRET={s}")),
    "aws-secret-access-key": (
        lambda rng: _random(rng, BASE64, 40, classes=(string.digits, string.ascii_uppercase, string.ascii_lowercase)),
        ("aws_secret_access_key = {s}", "the signing secret {s} leaked in a log")),
    "databricks-token": (
        lambda rng: "dapi" + _random(rng, HEX, 32),
        ("DATABRICKS_TOKEN={s}", "databricks: invalid token {s}")),
    "pypi-token": (
        lambda rng: "pypi-AgEIcHlwaS5vcmc" + _random(rng, URL_SAFE, 70),
        ("twine upload -p {s} dist/*", "HTTPError: 403 for {s}")),
    "slack-webhook": (
        lambda rng: "https://hooks.slack.com/services/T" + _random(rng, string.ascii_uppercase + string.digits, 8)
        + "/B" + _random(rng, string.ascii_uppercase + string.digits, 8) + "/" + _random(rng, ALNUM, 24),
        ("notify {s} when the eval finishes", '{{"webhook": "{s}"}}')),
    "twilio-api-key": (
        lambda rng: "SK" + _random(rng, HEX, 32, classes=("abcdef",)),
        ("twilio.base.exceptions: key {s} not found", "TWILIO_API_KEY={s}")),
    "high-entropy-token": (
        lambda rng: _random(rng, URL_SAFE, 48, classes=(string.digits, string.ascii_uppercase, string.ascii_lowercase)),
        ("session cookie {s} expired", "X-Signature: {s}")),
}

KINDS = tuple(_KINDS)  # the kinds of secrets, in the corpus's order


def secret_samples(seed: int = 0, per_kind: int = 2) -> list[SecretSample]:
    """`per_kind` secrets of each kind (the same ones for the same seed), each in one of the kind's sentences."""
    rng = random.Random(seed)
    samples = []
    for kind, (make, sentences) in _KINDS.items():
        for index in range(per_kind):
            secret = make(rng)
            samples.append(SecretSample(kind, sentences[index % len(sentences)].format(s=secret), secret))
    return samples


def lookalike_samples(seed: int = 0) -> list[Lookalike]:
    """Texts promptops logs that hold no secret; the random ids among them are the same for the same seed."""
    rng = random.Random(seed)

    def hexes(length: int) -> str:
        return "".join(rng.choice(HEX) for _ in range(length))

    def uuid() -> str:
        text = hexes(32)
        return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-a{text[17:20]}-{text[20:]}"

    sha, run_id, content_hash = hexes(40), hexes(32), hexes(64)
    words = "Please check the exchange rate for my card payment"
    samples = [
        ("git-sha", f"commit {sha}"),
        ("git-sha", f"promotion of banking_intent v3 ({hexes(40)}) to production"),
        ("git-sha", f'{{"git_commit": "{hexes(40)}", "git_dirty": false}}'),
        ("git-sha", f"detached HEAD at {sha[:8]}; git says v2"),
        ("git-describe", f"gitleaks v8.30.0-27-g{hexes(8)}"),
        ("content-hash", f"prompt_hash: {content_hash}"),
        ("content-hash", f"sha256:{hexes(64)}"),
        ("content-hash", f'{{"promptops.key_hash": "{hexes(16)}", "cache_key": "{hexes(64)}"}}'),
        ("run-id", f"run_id={run_id}"),
        ("run-id", f"runs:/{run_id}/model and mlflow-artifacts:/1/{hexes(32)}/artifacts/predictions.json"),
        ("logged-model-id", f"m-{hexes(32)}"),
        ("trace-id", f"tr-{hexes(32)}"),
        ("trace-id", f"promptops replay tr-{hexes(32)} --model local/smollm2-135m"),
        ("uuid", uuid()),
        ("uuid", f"request {uuid()} took 0.42 s"),
        ("base64-words", base64.b64encode(words.encode()).decode()),
        ("base64-words", base64.urlsafe_b64encode(b"The quick brown fox jumps over the lazy dog").decode()),
        ("base64-words", base64.b64encode(json.dumps({"intent": "card_arrival", "text": "where is my card"}).encode()).decode()),
        ("identifier", "test_everything_logged_to_mlflow_passes_the_secret_scrubber"),
        ("identifier", "HTTPConnectionPoolMaxRetriesExceeded"),
        ("identifier", "Base64HighEntropyString and KeywordDetector"),
        ("identifier", "promptops.evaluation._gate.passed"),
        ("identifier", "AbstractSingletonProxyFactoryBean2"),
        ("model-name", "local/smollm2-135m"),
        ("model-name", "openai/gpt-4o-mini-2024-07-18"),
        ("model-name", "anthropic/claude-3-5-sonnet-20241022"),
        ("model-name", "gguf:models/SmolLM2-135M-Instruct-Q4_1.gguf"),
        ("model-name", "sentence-transformers/all-MiniLM-L6-v2"),
        ("url", "https://api.openai.com/v1/chat/completions"),
        ("url", "http://127.0.0.1:5000/#/experiments/1/runs"),
        ("url", "sqlite:////tmp/promptops/mlflow.db"),
        ("url", "postgresql://postgres@127.0.0.1:5432/mlflow"),
        ("url", "prompts:/banking_intent@production"),
        ("url", "ssh://git@github.com/acme/prompts.git"),
        ("prose", "Please reset your password before Monday."),
        ("prose", "I forgot my password, how do I reset it?"),
        ("prose", "Forgot password? Click here to get a new one."),
        ("prose", "Password: forgotten. Token: expired."),
        ("prose", "Where do I find my API key? The token expired yesterday."),
        ("prose", "model.params.api_key: looks like a secret: set it in the environment, not in the prompt file"),
        ("prose", "Bearer of bad news: Basic questions about the 2 cards"),
        ("prose", "They say the key to the money is in the desk."),
        ("setting", "max_tokens: 256, temperature: 0.7"),
        ("setting", '{"input_tokens": 1200, "output_tokens": 32, "total_tokens": 1232}'),
        ("setting", "api_key_env: OPENAI_API_KEY"),
        ("setting", "password: ${DB_PASSWORD}"),
        ("setting", "token count: 1532"),
        ("labels", '{"intent": "card_arrival", "confidence": 0.93}'),
        ("labels", '[{"intent": "exchange_rate"}, {"intent": "top_up_failed"}]'),
        ("path", "/work/promptops/promptops/tracking/_runs.py:321"),
        ("path", "prompts/banking_intent.yaml:27: model.max_tokens: must be greater than 0"),
        ("path", "experiments/data/banking_intent/dev.jsonl:14: intent 'card_arival' is not one of the labels"),
        ("timestamp", "2026-12-08T09:00:00+00:00"),
        ("email", "ada.lovelace@example.com"),
    ]
    return [Lookalike(kind, text) for kind, text in samples]
