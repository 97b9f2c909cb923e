"""Keeping secrets out of logs, MLflow params and artifacts.

API keys live only in the environment. Anything promptops writes or prints that could echo
one (an error from a provider, a parameter map) passes through `redact` first.
"""

from __future__ import annotations

import os
import re
from typing import Any

# Names that end like a credential: OPENAI_API_KEY, HF_TOKEN, client_secret; not max_tokens.
SECRET_NAME = re.compile(r"(API[_-]?KEY|ACCESS[_-]?KEY|SECRET|PASSWORD|PASSWD|(^|_)TOKEN)$", re.IGNORECASE)
_SECRET_SHAPES = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|sk-ant-[A-Za-z0-9_\-]{8,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{20,})")
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
    return _SECRET_SHAPES.sub(MASK, text)


def redact_mapping(values: dict[str, Any]) -> dict[str, Any]:
    """Drop keys that name secrets; mask secret-looking values in the rest."""
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if SECRET_NAME.search(key):
            continue
        clean[key] = redact(value) if isinstance(value, str) else value
    return clean
