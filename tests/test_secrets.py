"""Secrets in the environment never reach messages, params or artifacts."""

from __future__ import annotations

import pytest

from promptops._secrets import MASK, redact, redact_mapping


def test_environment_secrets_and_key_shapes_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_API_KEY", "abcdef123456")
    text = "401 for key abcdef123456 and sk-proj-AAAAAAAAAAAA from the provider"
    assert redact(text) == f"401 for key {MASK} and {MASK} from the provider"


def test_mappings_drop_credential_names_but_keep_token_counts() -> None:
    clean = redact_mapping({"api_key": "x", "HF_TOKEN": "y", "max_tokens": 32, "model": "openai/gpt-4o-mini"})
    assert clean == {"max_tokens": 32, "model": "openai/gpt-4o-mini"}
