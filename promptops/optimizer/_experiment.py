"""Experiment files, `experiments/NAME.yaml`: what to optimize, over which space, within which budget.

The file is the whole specification of a search, so a study can be resumed only with the
same file (its content hash is stored with the study) and two people reading it know what
was searched.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import Field, ValidationError, field_validator, model_validator

from promptops._text import read_utf8
from promptops.artifact import PROMPT_NAME, ModelSpec, find_project_root
from promptops.errors import PromptFileError, UnknownPromptError
from promptops.artifact import BUILTIN_METRICS, MetricField
from promptops.artifact import parse_yaml_model
from promptops.artifact import Strict

OptimizerName = Literal["none", "labeled", "bootstrap", "random_search", "mipro", "gepa"]
Direction = Literal["maximize", "minimize"]
# Objectives other than the quality metric: what a configuration costs to run.
COST_OBJECTIVES = ("cost_usd", "latency_p50_s", "latency_p95_s", "tokens")
# What a model's temperature may be (as in a prompt file's `model.temperature`).
TEMPERATURE_RANGE = (0.0, 2.0)


class ExperimentFileError(PromptFileError):
    """An experiment file that cannot be read or does not validate."""


class _Range(Strict):
    @model_validator(mode="after")
    def _ordered(self) -> "_Range":
        if self.high < self.low:  # type: ignore[attr-defined]
            raise ValueError(f"high ({self.high}) is below low ({self.low})")  # type: ignore[attr-defined]
        return self


class IntRange(_Range):
    low: int = Field(ge=0)
    high: int = Field(ge=0)
    step: int = Field(1, ge=1)


class FloatRange(_Range):
    low: float = Field(ge=TEMPERATURE_RANGE[0], le=TEMPERATURE_RANGE[1])
    high: float = Field(ge=TEMPERATURE_RANGE[0], le=TEMPERATURE_RANGE[1])


class SearchSpace(Strict):
    """What a trial may vary; a single value fixes a dimension, a list is a choice, low/high a range."""

    models: list[ModelSpec] = Field(min_length=1)
    optimizers: list[OptimizerName] = Field(default_factory=lambda: ["none"], min_length=1)
    demos: Union[int, list[int], IntRange] = 0
    temperature: Union[float, list[float], FloatRange] = 0.0
    instructions: list[str] = Field(default_factory=list)
    calibrate: Union[None, bool, list[bool]] = Field(
        None, description="embedded models: offset label choices by a content-free input's; unset: as the prompt file has it")
    reflection_model: Optional[ModelSpec] = None
    train_limit: int = Field(64, ge=1)
    dev_limit: Optional[int] = Field(None, ge=1, description="score trials on the first N dev rows only (an agent's task is slow)")
    max_steps: Union[int, list[int], None] = Field(None, description="agents: the loop's max_steps; none keeps the file's")
    tool_descriptions: list[dict[str, str]] = Field(
        default_factory=list, description="agents: variants of the tools' descriptions (tool name -> text), beside the file's own")

    @field_validator("models", "reflection_model", mode="before")
    @classmethod
    def _model_strings(cls, value: Any) -> Any:
        """`- local/smollm2-135m` is shorthand for `- id: local/smollm2-135m`."""
        if isinstance(value, list):
            return [{"id": item} if isinstance(item, str) else item for item in value]
        return {"id": value} if isinstance(value, str) else value

    @field_validator("demos", "temperature", mode="before")
    @classmethod
    def _ranges(cls, value: Any, info: Any) -> Any:
        """A mapping is a range; checked here so its error is about the range, not every union member."""
        if not isinstance(value, dict):
            return value
        model = IntRange if info.field_name == "demos" else FloatRange
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            error = exc.errors()[0]
            where_ = ".".join(str(part) for part in error["loc"])
            raise ValueError(f"{where_ + ': ' if where_ else ''}{error['msg'].removeprefix('Value error, ')}") from None

    @field_validator("demos")
    @classmethod
    def _demo_counts(cls, demos: Union[int, list[int], IntRange]) -> Union[int, list[int], IntRange]:
        """A negative count would pass here and crash the optimizer after its first model calls."""
        if isinstance(demos, int) and demos < 0:
            raise ValueError(f"{demos} is negative: a trial shows 0 or more demos")
        if isinstance(demos, list):
            if not demos:
                raise ValueError("the list is empty: give at least one demo count, e.g. [0, 4, 8]")
            for index, count in enumerate(demos):
                if count < 0:
                    raise ValueError(f"demos[{index}]: {count} is negative: a trial shows 0 or more demos")
        return demos

    @field_validator("temperature")
    @classmethod
    def _temperatures(cls, temperature: Union[float, list[float], FloatRange]) -> Union[float, list[float], FloatRange]:
        low, high = TEMPERATURE_RANGE
        if isinstance(temperature, (int, float)) and not low <= temperature <= high:
            raise ValueError(f"{temperature:g} is outside {low:g} to {high:g}")
        if isinstance(temperature, list):
            if not temperature:
                raise ValueError(f"the list is empty: give at least one temperature from {low:g} to {high:g}")
            for index, value in enumerate(temperature):
                if not low <= value <= high:
                    raise ValueError(f"temperature[{index}]: {value:g} is outside {low:g} to {high:g}")
        return temperature

    @field_validator("instructions")
    @classmethod
    def _instructions_not_blank(cls, texts: list[str]) -> list[str]:
        for index, text in enumerate(texts):
            if not text.strip():
                raise ValueError(f"instructions[{index}] is empty")
        return texts

    @model_validator(mode="after")
    def _gepa_can_reflect(self) -> "SearchSpace":
        if "gepa" in self.optimizers and self.reflection_model is None:
            raise ValueError(
                "optimizer gepa needs reflection_model: a model strong enough to critique answers, e.g. openai/gpt-4o-mini"
            )
        ids = [model.id for model in self.models]
        duplicate = next((i for i in ids if ids.count(i) > 1), None)
        if duplicate:
            raise ValueError(f"model {duplicate!r} is listed twice")
        most = max(self.demo_choices)
        if most > self.train_limit:
            raise ValueError(f"demos: {most} demos is more than train_limit {self.train_limit}: a trial draws its demos"
                             " from that many train examples; lower the demos or raise train_limit")
        return self

    @field_validator("max_steps")
    @classmethod
    def _step_counts(cls, steps: Union[int, list[int], None]) -> Union[int, list[int], None]:
        counts = [steps] if isinstance(steps, int) else (steps or [])
        if isinstance(steps, list) and not steps:
            raise ValueError("the list is empty: give at least one step count, e.g. [2, 4]")
        for count in counts:
            if not 1 <= count <= 50:
                raise ValueError(f"{count} steps: an agent takes 1 to 50 steps")
        return steps

    @property
    def step_choices(self) -> Optional[list[int]]:
        if self.max_steps is None:
            return None
        return [self.max_steps] if isinstance(self.max_steps, int) else sorted(set(self.max_steps))

    @property
    def demo_choices(self) -> list[int]:
        if isinstance(self.demos, int):
            return [self.demos]
        if isinstance(self.demos, list):
            return sorted(set(self.demos))
        return list(range(self.demos.low, self.demos.high + 1, self.demos.step))


class BudgetSpec(Strict):
    """Hard limits for the whole study, across resumes; any one reached stops it."""

    n_trials: int = Field(20, ge=1)
    max_cost_usd: Optional[float] = Field(None, gt=0)
    max_model_calls: Optional[int] = Field(None, ge=1)
    timeout_s: Optional[float] = Field(None, gt=0)


class PruningSpec(Strict):
    """Rungs: dev examples a trial is scored on before it may go on to the next (the last is all of dev)."""

    rungs: list[int] = Field(default_factory=lambda: [16])
    margin: float = Field(0.05, ge=0, le=1)

    @field_validator("rungs")
    @classmethod
    def _increasing(cls, rungs: list[int]) -> list[int]:
        if any(r < 1 for r in rungs) or rungs != sorted(set(rungs)):
            raise ValueError("rungs must be increasing positive example counts")
        return rungs


class WinnerRule(Strict):
    """Among the Pareto front: the cheapest trial within `within` of the best primary metric."""

    rule: Literal["cheapest_within", "best"] = "cheapest_within"
    within: float = Field(0.01, ge=0, le=1)


class Experiment(Strict):
    name: str
    description: str = ""
    prompt: str
    data: Optional[str] = None
    metric: MetricField = None  # a name, or a judge or similarity mapping; default: the prompt's eval.metric
    objectives: dict[str, Direction] = Field(default_factory=dict)
    search: SearchSpace
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    pruning: PruningSpec = Field(default_factory=PruningSpec)
    winner: WinnerRule = Field(default_factory=WinnerRule)
    sampler: Literal["tpe", "nsga2", "random"] = "tpe"
    seed: int = Field(0, ge=0, lt=2**32)  # what Optuna's samplers (numpy) accept

    @field_validator("prompt")
    @classmethod
    def _prompt_is_a_name(cls, prompt: str) -> str:
        if not PROMPT_NAME.match(prompt):  # the optimizer writes its winner back to this file: never outside prompts/
            raise ValueError(f"{prompt!r} is not a prompt's name; write the name of a file in prompts/ "
                             "(banking_intent for prompts/banking_intent.yaml)")
        return prompt

    @model_validator(mode="after")
    def _objectives_known(self) -> "Experiment":
        """The quality metric first, then costs; the order is checked first, so `{cost_usd: ..., accuracy: ...}` is
        reported as out of order, not as an unknown `accuracy`."""
        names = list(self.objectives)
        costs = ", ".join(COST_OBJECTIVES)
        if names and (names[0] in COST_OBJECTIVES or _close_to(names[0], COST_OBJECTIVES) and not _is_metric(names[0])):
            raise ValueError(f"objectives.{names[0]}: the first objective must be the quality metric (e.g. accuracy or f1),"
                             f" then the costs ({costs}); move {names[0]!r} after it")
        for name in names[1:]:
            if name in COST_OBJECTIVES:
                continue
            if _is_metric(name):
                raise ValueError(f"objectives.{name}: {name!r} is a quality metric, which only the first objective can be;"
                                 f" the others are costs ({costs})")
            close = _close_to(name, COST_OBJECTIVES)
            hint = f"; did you mean {close!r}?" if close else f": after the quality metric, use {costs}"
            raise ValueError(f"objectives.{name}: unknown objective {name!r}{hint}")
        return self

    @property
    def content_hash(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json", exclude={"budget", "description"}), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _close_to(name: str, choices: tuple[str, ...]) -> Optional[str]:
    import difflib

    close = difflib.get_close_matches(name, choices, n=1)
    return close[0] if close else None


def _is_metric(name: str) -> bool:
    """A quality metric's key: a built-in metric, a judge's score, or a user function's name (`module:function`)."""
    return name in BUILTIN_METRICS or name == "judge" or ":" in name


def load_experiment(reference: str | Path, root: Optional[Path] = None) -> tuple[Experiment, Path]:
    """An experiment by name (`banking_intent`) or path; errors name the file and line."""
    path = resolve_experiment_path(reference, root)
    text = read_utf8(path, ExperimentFileError)
    experiment = parse_yaml_model(
        text, path, Experiment, ExperimentFileError,
        not_a_mapping="an experiment file must be a YAML mapping with name, prompt and search",
    )
    if experiment.name != path.stem:
        raise ExperimentFileError(path, 1, f"name {experiment.name!r} must match the file name {path.stem!r}")
    return experiment, path


def resolve_experiment_path(reference: str | Path, root: Optional[Path] = None) -> Path:
    candidate = Path(reference)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.exists():
            raise UnknownPromptError(f"{reference}: no such experiment file")
        return candidate
    folder = (root or find_project_root()) / "experiments"
    path = folder / f"{reference}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        hint = f"; known experiments: {', '.join(known)}" if known else f"; {folder} has no experiment files"
        raise UnknownPromptError(f"unknown experiment {reference!r}{hint}")
    return path
