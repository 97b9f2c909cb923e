"""The one base of every model users write (prompt, experiment, metric, guardrails and tool sections)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Unknown keys are errors (a typo is never silently ignored) and a loaded file is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
