"""The `model:` section: which model answers and how. A leaf: the prompt, judges and experiments all use it."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field, field_validator

from promptops._secrets import credential_in, url_has_credentials
from promptops.artifact._base import Strict
from promptops.artifact._yaml import format_loc

DEFAULT_MODEL = "local/smollm2-135m"


class Price(Strict):
    """USD per million tokens; needed where LiteLLM's price table has no entry."""

    input_per_million_usd: float = Field(ge=0)
    output_per_million_usd: float = Field(ge=0)


class ModelSpec(Strict):
    """Which model answers and how; API keys never live here, only in the environment."""

    id: str = DEFAULT_MODEL
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(256, gt=0)
    price: Optional[Price] = None
    api_base: Optional[str] = None
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _no_secrets(cls, params: dict[str, Any]) -> dict[str, Any]:
        """A key (`api_key`), a header (`extra_headers: {Authorization: ...}`) or a value that is a credential."""
        found = credential_in(params)
        if found:
            place, why = found
            raise ValueError(f"{format_loc(place)}: {why}: set it in the environment, not in the prompt file")
        return params

    @field_validator("api_base")
    @classmethod
    def _no_url_credentials(cls, api_base: Optional[str]) -> Optional[str]:
        if api_base is not None and url_has_credentials(api_base):
            raise ValueError("the URL holds a user name or password: put credentials in the environment"
                             " (e.g. OPENAI_API_KEY), not in the prompt file")
        return api_base
