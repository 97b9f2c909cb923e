"""The `guardrails:` section of a prompt file: what a loaded prompt refuses, retries and falls back to.

Every field has a safe default, so a prompt without the section is still checked (input types,
output schema with one retry, a loop guard, a timeout, a circuit breaker); caps, rate limits,
deny patterns and fallbacks are opt-in because only the prompt's owner knows their values.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator
from promptops.artifact._base import Strict


class InputRules(Strict):
    """Checked before any model call; field types are always checked against the prompt's inputs."""

    max_chars: Optional[int] = Field(None, gt=0, description="longest accepted text, per input field")
    deny: list[str] = Field(default_factory=list, description="regular expressions no input may match")

    @field_validator("deny")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"deny pattern {pattern!r} is not a valid regular expression: {exc}") from None
        return patterns


class OutputRules(Strict):
    """An answer must fit the output fields (schema, enum labels); a bad one is asked again, a bounded number of times.

    With `min_confidence`, an answer whose least sure label (enum or boolean field) has a lower
    probability is not returned but held for a person to review (`NeedsReview`); so is one whose
    model reported no confidence, since then nothing vouches for it.
    """

    retries: int = Field(1, ge=0, le=5)
    retry_temperature: float = Field(0.7, ge=0, le=2, description="re-asking at temperature 0 would return the same answer")
    min_confidence: Optional[float] = Field(None, description="the probability below which a chosen label goes to human review")

    @field_validator("min_confidence")
    @classmethod
    def _is_a_probability(cls, value: Optional[float]) -> Optional[float]:
        if value is not None and not 0 < value <= 1:
            raise ValueError(f"{value:g} is not a probability: use a number above 0 and at most 1, e.g. 0.6")
        return value


class CostCap(Strict):
    """USD caps on what the model calls of one session (one loaded program) or one user key may spend."""

    session_usd: Optional[float] = Field(None, gt=0)
    per_key_usd: Optional[float] = Field(None, gt=0)


class RateLimit(Strict):
    """A token bucket per user key: `per_minute` requests on average, bursts of up to `burst`."""

    per_minute: float = Field(gt=0)
    burst: int = Field(1, ge=1)


class CircuitBreaker(Strict):
    """Stop calling a model that keeps failing: open after `failures` in a row, try one call again after `cooldown_s`."""

    failures: int = Field(5, ge=1)
    cooldown_s: float = Field(30.0, gt=0)


class FallbackStep(Strict):
    """Where a request goes when the one before it fails: another version of the prompt, or another model."""

    version: Optional[str] = Field(None, description="'previous' (what the channel served before), a channel, vN or a commit")
    model: Optional[str] = None

    @model_validator(mode="after")
    def _one_target(self) -> "FallbackStep":
        if (self.version is None) == (self.model is None):
            raise ValueError("a fallback step names either a version or a model")
        return self

    @property
    def label(self) -> str:
        return f"version {self.version}" if self.version else f"model {self.model}"


class GuardrailsSpec(Strict):
    input: InputRules = Field(default_factory=InputRules)
    output: OutputRules = Field(default_factory=OutputRules)
    max_calls_per_request: int = Field(4, ge=1, description="loop guard: model calls one request may make, retries and fallbacks included")
    timeout_s: Optional[float] = Field(60.0, gt=0, description="per model call")
    cost_cap: CostCap = Field(default_factory=CostCap)
    rate_limit: Optional[RateLimit] = None
    circuit_breaker: CircuitBreaker = Field(default_factory=CircuitBreaker)
    fallback: list[FallbackStep] = Field(default_factory=list)


# --- agents ------------------------------------------------------------------------------------

_FUNCTION_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ToolArgument(Strict):
    """What the file says about one argument, over what the function's signature says."""

    description: Optional[str] = None
    enum: Optional[list[Any]] = Field(None, min_length=1)


class ToolSpec(Strict):
    """One tool of an agent: a Python function, its description and argument schema, and how far it is trusted.

    `function` is `module:function`, importable from the project root. The description (the
    docstring by default) and the argument descriptions are the model's only guide to the tool,
    so they are versioned here and may be optimized. `approval: required` runs the tool only
    after an approver says yes; `max_calls` bounds its calls per task; `timeout_s` its run time.
    """

    function: str
    name: Optional[str] = None  # default: the function's name
    description: Optional[str] = None  # default: the function's docstring
    args: dict[str, ToolArgument] = Field(default_factory=dict)
    approval: Literal["never", "required"] = "never"
    timeout_s: float = Field(10.0, gt=0)
    max_calls: Optional[int] = Field(None, ge=1)

    @field_validator("function")
    @classmethod
    def _is_a_reference(cls, reference: str) -> str:
        if not _FUNCTION_REFERENCE.match(reference):
            raise ValueError(f"{reference!r} is not module:function (e.g. tools.bank:freeze_card)")
        return reference

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, name: Optional[str]) -> Optional[str]:
        if name is not None and (not _TOOL_NAME.match(name) or name == "finish"):
            raise ValueError(f"tool name {name!r} must be letters, digits and _, and not 'finish' (the loop's own tool)")
        return name

    @property
    def tool_name(self) -> str:
        return self.name or self.function.rpartition(":")[2]


class AgentSpec(Strict):
    """The loop of an agent (DSPy's ReAct) and what one task may spend.

    A task is one request: up to `max_steps` steps (each a model call choosing a tool, then that
    tool's call), then one model call that reads the trajectory and fills the outputs. The loop
    guard counts model calls (`max_model_calls`, by default `max_steps + 1` per attempt) and the
    cost cap covers the whole task, its model calls and retries together.
    """

    max_steps: int = Field(5, ge=1, le=50)
    max_model_calls: Optional[int] = Field(None, ge=2)
    max_cost_usd: Optional[float] = Field(None, gt=0)
    timeout_s: float = Field(300.0, gt=0, description="the whole task, tools and model calls together")
    thought_chars: int = Field(300, ge=20, le=4000, description="longest thought of one step, so a step fits max_tokens")
    demos: list[dict[str, Any]] = Field(default_factory=list, description="examples of single steps (inputs, trajectory, "
                                        "next_thought, next_tool_name, next_tool_args), as DSPy's optimizers bootstrap them")
