"""What users write about a metric beyond its name: an LLM judge, or semantic similarity.

`eval.metric` (in a prompt file) and `metric` (in an experiment file) take a name (`accuracy`,
`f1`, `schema_validity`, `similarity`, `module:function`) or one of these mappings:

    metric:
      judge:                      # or: judge: judges/reply_quality.yaml, a judge file several prompts share
        rubric: The summary names the customer's actual problem in a few words, and invents nothing.
        model: local/gemma3-270m  # any model string, or a model mapping as in a prompt file
        scale: pass_fail          # or 1-5

    metric:
      similarity: {threshold: 0.6, model: local/minilm-l6-v2}

Only pydantic is imported here: prompt files validate without loading DSPy or an embedder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator
from promptops.artifact._base import Strict
from promptops.artifact._model_spec import ModelSpec
from typing_extensions import Annotated

BUILTIN_METRICS = ("accuracy", "f1", "schema_validity", "similarity")  # besides a judge and a user's module:function
DEFAULT_JUDGE_MODEL = "local/smollm2-135m"
DEFAULT_EMBEDDER = "local/minilm-l6-v2"
_JUDGE_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


class JudgeSpec(Strict):
    """An LLM judge: a rubric, the model that applies it, and the scale of its score."""

    name: str = "judge"  # the assessment's name in MLflow, and the judge file's name
    rubric: str = Field(min_length=1)
    model: Union[str, dict[str, Any]] = DEFAULT_JUDGE_MODEL  # a model string, or a model mapping as in a prompt file
    scale: Literal["pass_fail", "1-5"] = "pass_fail"
    pass_at: Optional[int] = Field(None, ge=1, le=5)  # on the 1-5 scale, the lowest passing score (default 4)
    reason_chars: int = Field(200, ge=20, le=2000)  # the one-sentence reason's bound, so it fits max_tokens
    # The reason before the score (it reasons, then decides), or after it: an embedded model decides better
    # before it rambles (judge_labels, SmolLM2: kappa 0.15 score first, 0.05 reason first; both near chance).
    reason_first: bool = True

    @field_validator("name")
    @classmethod
    def _name_is_slug(cls, name: str) -> str:
        if not _JUDGE_NAME.match(name):
            raise ValueError(f"judge name {name!r} must be lowercase letters, digits, '_' or '-'")
        return name

    @field_validator("model")
    @classmethod
    def _model_is_a_model(cls, model: Union[str, dict[str, Any]]) -> Union[str, dict[str, Any]]:
        """`model: openai/gpt-4o-mini` is the usual form; a mapping sets price, api_base or params too."""
        try:
            ModelSpec.model_validate({"id": model} if isinstance(model, str) else model)
        except ValidationError as exc:
            raise ValueError(_first_error(exc)) from None
        return model

    @property
    def model_spec(self) -> Any:
        """The judge's `ModelSpec`: temperature 0 and room for a short reason and the score unless the file says more."""
        data = {"id": self.model} if isinstance(self.model, str) else dict(self.model)
        data.setdefault("max_tokens", 128)
        return ModelSpec.model_validate(data)

    @property
    def model_id(self) -> str:
        return self.model if isinstance(self.model, str) else str(self.model.get("id", ""))

    @model_validator(mode="after")
    def _pass_at_on_scale(self) -> "JudgeSpec":
        if self.pass_at is not None and self.scale != "1-5":
            raise ValueError("pass_at: only a 1-5 judge has a passing score to set; a pass_fail judge passes or fails")
        return self

    @property
    def passing_score(self) -> int:
        return self.pass_at or 4

    @property
    def labels(self) -> tuple[str, ...]:
        """The values the judge may give, as it writes them."""
        return ("pass", "fail") if self.scale == "pass_fail" else ("1", "2", "3", "4", "5")

    def normalized(self, value: str) -> float:
        """A score in [0, 1]: pass 1 and fail 0; on 1-5, (score - 1) / 4."""
        if self.scale == "pass_fail":
            return 1.0 if value == "pass" else 0.0
        return (int(value) - 1) / 4

    def passed(self, value: str) -> bool:
        return value == "pass" if self.scale == "pass_fail" else int(value) >= self.passing_score


class SimilaritySpec(Strict):
    """Cosine similarity of the answer's and the reference's sentence embeddings; at `threshold` or above it passes."""

    model: str = DEFAULT_EMBEDDER  # the offline embedder, or a LiteLLM embedding model string
    threshold: float = Field(0.7, ge=-1, le=1)
    api_base: Optional[str] = None


class MetricSpec(Strict):
    """A metric that needs settings: exactly one of `judge` and `similarity`."""

    judge: Optional[Union[JudgeSpec, str]] = None  # a string: a judge file, relative to the project root
    similarity: Optional[SimilaritySpec] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "MetricSpec":
        if (self.judge is None) == (self.similarity is None):
            raise ValueError("a metric mapping needs exactly one of `judge:` (a rubric, or a judge file) and `similarity:`")
        if isinstance(self.judge, str) and Path(self.judge).suffix not in (".yaml", ".yml"):
            raise ValueError(f"judge: {self.judge!r} is not a judge file (judges/NAME.yaml) nor a mapping with a rubric")
        return self

    @property
    def name(self) -> str:
        """The metric's name in results and runs: `judge` or `similarity`."""
        return "judge" if self.judge is not None else "similarity"


def _first_error(exc: ValidationError) -> str:
    """A nested model's first error as `place: message`, so the file's line finder can point at it."""
    error = exc.errors()[0]
    place = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{place}: {message}" if place else message


def _metric_mapping(value: Any) -> Any:
    """A mapping is a `MetricSpec`, validated as one, so its mistakes are reported as its own, not as "not a string"."""
    if not isinstance(value, dict):
        return value
    try:
        return MetricSpec.model_validate(value)
    except ValidationError as exc:
        raise ValueError(_first_error(exc)) from None


MetricField = Annotated[Optional[Union[str, MetricSpec]], BeforeValidator(_metric_mapping)]


def score_range(metric: "str | MetricSpec | None") -> Optional[tuple[float, float]]:
    """The lowest and highest score `metric` gives: 0 to 1 for every built-in metric and judge (a judge's 1-5 is
    normalized), -1 to 1 for similarity (a cosine); None for a user's `module:function`, whose range only it knows."""
    name = metric_name(metric)
    if name is None:
        return 0.0, 1.0  # the default: accuracy or f1
    if ":" in name:
        return None
    return (-1.0, 1.0) if name == "similarity" else (0.0, 1.0)


def metric_name(metric: "str | MetricSpec | None") -> Optional[str]:
    """The name a metric is shown and logged under."""
    if metric is None or isinstance(metric, str):
        return metric
    return metric.name
