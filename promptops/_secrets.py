"""Keeping secrets out of logs, MLflow params and artifacts.

API keys live only in the environment: a prompt file that holds one is refused when it is read
(`credential_in`). Anything promptops writes or prints that could echo one (an error from a
provider, a parameter map, a prompt file copied into MLflow, a trace) passes through `redact` first.
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional

# Names that end like a credential: OPENAI_API_KEY, HF_TOKEN, client_secret; not max_tokens.
SECRET_NAME = re.compile(r"(API[_-]?KEY|ACCESS[_-]?KEY|SECRET|PASSWORD|PASSWD|(^|_)TOKEN)$", re.IGNORECASE)
_SECRET_SHAPES = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|sk-ant-[A-Za-z0-9_\-]{8,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{20,})")
# Header names that carry credentials: Authorization, Proxy-Authorization, Cookie, X-Auth-Token, X-Api-Key.
_SECRET_HEADER = re.compile(r"(authorization|cookie|(^|[-_])(auth|token|api[-_]?key)$)", re.IGNORECASE)
# Values that are credentials whatever they are called: `Bearer abc...`, `Basic dXNl...`.
_AUTH_SCHEME = re.compile(r"\b(Bearer|Basic|bearer|basic)\s+(?=[A-Za-z0-9._~+/=\-]*\d)[A-Za-z0-9._~+/=\-]{8,}")
# `scheme://user:password@host` (or `scheme://token@host`): credentials inside a URL.
_URL_CREDENTIALS = re.compile(r"\b([a-z][a-z0-9+.\-]*://)[^/\s@]+@", re.IGNORECASE)
MASK = "***"


def secret_values() -> list[str]:
    """Values of environment variables whose names say they are secrets."""
    return sorted(
        (value for name, value in os.environ.items() if SECRET_NAME.search(name) and len(value) >= 6),
        key=len,
        reverse=True,
    )


def redact(text: str) -> str:
    for value in secret_values():
        text = text.replace(value, MASK)
    text = _URL_CREDENTIALS.sub(rf"\1{MASK}@", text)
    text = _AUTH_SCHEME.sub(rf"\1 {MASK}", text)
    return _SECRET_SHAPES.sub(MASK, text)


def url_has_credentials(url: str) -> bool:
    return bool(_URL_CREDENTIALS.search(url))


def credential_in(value: Any, place: tuple[str | int, ...] = ()) -> Optional[tuple[tuple[str | int, ...], str]]:
    """The first credential in (nested) settings: its place (keys and list indexes below `place`) and why it looks like one."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (SECRET_NAME.search(key) or _SECRET_HEADER.search(key)):
                return (*place, key), "looks like a secret"
            found = credential_in(item, (*place, str(key)))
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = credential_in(item, (*place, index))
            if found:
                return found
    elif isinstance(value, str):
        if url_has_credentials(value):
            return place, "the URL holds a user name or password"
        if _AUTH_SCHEME.search(value) or _SECRET_SHAPES.search(value):
            return place, "the value looks like a secret"
    return None


def redact_mapping(values: dict[str, Any]) -> dict[str, Any]:
    """Drop keys that name secrets; mask secret-looking values in the rest."""
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if SECRET_NAME.search(key):
            continue
        clean[key] = redact(value) if isinstance(value, str) else value
    return clean


def redact_data(value: Any, *, max_chars: Optional[int] = None) -> Any:
    """`redact` applied to every string in nested mappings and lists (tables, JSON artifacts, span values);
    with `max_chars`, each string is also cut to that length, ending with how long it was (cutting it again changes nothing)."""
    if isinstance(value, str):
        text = redact(value)
        if max_chars is None or len(text) <= max_chars:
            return text
        note = f"… [cut: {len(text):,} characters]"
        return text[: max_chars - len(note)] + note
    if isinstance(value, dict):
        return {key: redact_data(item, max_chars=max_chars) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(item, max_chars=max_chars) for item in value]
    return value


def redact_yaml(text: str) -> str:
    """YAML text redacted and still loadable: unchanged when nothing is secret, else re-written from its redacted values
    (a bare `***` would read as a YAML alias)."""
    if redact(text) == text:
        return text
    import yaml

    return yaml.safe_dump(redact_data(yaml.safe_load(text)), sort_keys=False, allow_unicode=True, width=100)


def error_line(exc: BaseException, max_chars: int = 500) -> str:
    """`Type: message` on one line, secrets masked: how an error is kept in a result, a record or a table."""
    text = " ".join(str(exc).split())
    return redact(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:max_chars]
