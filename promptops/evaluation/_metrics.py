"""Metric functions: label accuracy, null-aware per-field F1, schema validity, user metrics.

All work on plain dicts of expected and predicted output values, so they are testable
without a model. A prediction of None means the model gave no usable answer.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from promptops.artifact import FieldSpec, Prompt
from promptops.errors import MetricError
from promptops.artifact import BUILTIN_METRICS, JudgeSpec, MetricSpec, SimilaritySpec

_SPACES = re.compile(r"\s+")
_EDGE_PUNCTUATION = ".,;:!?\"'"

Prediction = Optional[dict[str, Any]]
UserMetric = Callable[[dict[str, Any], dict[str, Any]], float]


def normalize(value: Any) -> Any:
    """Compare text the way a person would: case, spacing and edge punctuation do not count."""
    if value is None:
        return None
    if isinstance(value, str):
        text = _SPACES.sub(" ", value).strip().strip(_EDGE_PUNCTUATION).strip().lower()
        return text or None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return json.dumps(value, sort_keys=True, default=str)
    return float(value)


def flatten(values: dict[str, Any], fields: Sequence[FieldSpec], prefix: str = "") -> dict[str, Any]:
    """Nested object fields as dotted leaves (`booking.date`), so each is scored on its own."""
    leaves: dict[str, Any] = {}
    for spec in fields:
        key = f"{prefix}{spec.name}"
        value = values.get(spec.name) if isinstance(values, dict) else None
        if spec.type == "object" and spec.fields:
            nested = value.model_dump() if hasattr(value, "model_dump") else value
            leaves.update(flatten(nested if isinstance(nested, dict) else {}, spec.fields, f"{key}."))
        else:
            leaves[key] = value
    return leaves


def is_correct(expected: dict[str, Any], predicted: Prediction, fields: Sequence[FieldSpec]) -> bool:
    """Every output field matches: for a one-label prompt this is label accuracy."""
    if predicted is None:
        return False
    want, got = flatten(expected, fields), flatten(predicted, fields)
    return all(normalize(want[key]) == normalize(got.get(key)) for key in want)


def accuracy(pairs: Sequence[tuple[dict[str, Any], Prediction]], fields: Sequence[FieldSpec]) -> float:
    if not pairs:
        return 0.0
    return sum(is_correct(expected, predicted, fields) for expected, predicted in pairs) / len(pairs)


@dataclass(frozen=True)
class FieldScore:
    """Precision, recall and F1 of one field; a null is the absence of a value, not a value."""

    field: str
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else (1.0 if not self.false_negatives else 0.0)

    @property
    def recall(self) -> float:
        present = self.true_positives + self.false_negatives
        return self.true_positives / present if present else (1.0 if not self.false_positives else 0.0)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def support(self) -> int:
        return self.true_positives + self.false_negatives


def field_scores(pairs: Sequence[tuple[dict[str, Any], Prediction]], fields: Sequence[FieldSpec]) -> dict[str, FieldScore]:
    """Per-field scores plus `micro` over all fields, null-aware.

    A wrong value where one was expected counts as a false positive and a false negative,
    as in slot filling; a value where null was expected is a false positive; a null where
    a value was expected is a false negative; null for null counts for nothing.
    """
    counts: dict[str, list[int]] = {}
    for expected, predicted in pairs:
        want = flatten(expected, fields)
        got = flatten(predicted or {}, fields)
        for key, wanted in want.items():
            tally = counts.setdefault(key, [0, 0, 0])
            wanted, given = normalize(wanted), normalize(got.get(key))
            if given is not None and given == wanted:
                tally[0] += 1
                continue
            if given is not None:
                tally[1] += 1
            if wanted is not None:
                tally[2] += 1
    scores = {key: FieldScore(key, *tally) for key, tally in counts.items()}
    scores["micro"] = FieldScore("micro", *(sum(t[i] for t in counts.values()) for i in range(3)))
    return scores


def schema_validity(predictions: Sequence[Prediction], prompt: Prompt) -> float:
    """Share of answers that parsed and fit every output field's declared type."""
    if not predictions:
        return 0.0
    valid = sum(p is not None and prompt.check_example(p, outputs=True, inputs=False) is None for p in predictions)
    return valid / len(predictions)


def default_metric(prompt: Prompt) -> "str | MetricSpec":
    """The metric a prompt is judged by: its own choice, else accuracy for labels and F1 for extraction."""
    if prompt.eval.metric:
        return prompt.eval.metric
    leaves = flatten({}, prompt.outputs)
    if len(leaves) == 1 or all(f.type in ("enum", "boolean") for f in prompt.outputs):
        return "accuracy"
    return "f1"


def load_user_metric(reference: str, root: Optional[Path] = None) -> UserMetric:
    """`module:function`, importable from the project root; called as fn(example, prediction) -> float."""
    module_name, _, function_name = reference.partition(":")
    if not module_name or not function_name:
        raise MetricError(f"unknown metric {reference!r}: use one of {', '.join(BUILTIN_METRICS)} or module:function",
                          value=reference)
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MetricError(f"metric {reference!r}: cannot import {module_name!r} ({exc})", value=reference) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise MetricError(f"metric {reference!r}: {module_name} has no function {function_name!r}", value=reference)
    return function


def check_metric_name(name: str, root: Optional[Path] = None) -> Optional[UserMetric]:
    """None for a built-in metric, the function for a user one; refuses anything else."""
    if name in BUILTIN_METRICS:
        return None
    return load_user_metric(name, root)


@dataclass(frozen=True)
class Metric:
    """A primary metric ready to score: its name, and the user function, judge or similarity settings it needs."""

    name: str  # as results and runs show it: accuracy, f1, schema_validity, similarity, judge, module:function
    function: Optional[UserMetric] = None
    judge: Optional[JudgeSpec] = None
    similarity: Optional[SimilaritySpec] = None

    @property
    def key(self) -> str:
        """The key of its value in an eval's metrics: a user metric's function name, else the name."""
        return self.name.partition(":")[2] or self.name

    @property
    def per_example(self) -> bool:
        """A mean of per-example scores (compared example by example), not a ratio of counts like accuracy or F1."""
        return self.name not in ("accuracy", "f1")

    @property
    def needs_references(self) -> bool:
        """Label match, F1 and similarity compare with the row's expected outputs; a judge can work from its rubric alone."""
        return self.judge is None and self.name != "schema_validity"


def resolve_metric(metric: "str | MetricSpec | Metric | None", prompt: Prompt, root: Optional[Path] = None) -> Metric:
    """The metric `metric` names (the prompt's own when None), with its judge file or user function loaded.

    A string may be a built-in name, `similarity`, `module:function`, `judge` (the prompt's own judge),
    or a judge file (`judges/NAME.yaml`).
    """
    if isinstance(metric, Metric):
        return metric
    spec = default_metric(prompt) if metric is None else metric
    if (spec == "similarity" or (isinstance(spec, MetricSpec) and spec.similarity is not None)) \
            and not any(field.type == "string" for field in prompt.outputs):
        outputs = ", ".join(f"{field.name} ({field.type})" for field in prompt.outputs)
        raise MetricError(f"metric 'similarity' compares free-text answers with their references, but prompt {prompt.name!r} "
                          f"has no string output (its outputs: {outputs}); use accuracy or f1")
    if isinstance(spec, str):
        if spec == "similarity":
            own = prompt.eval.metric
            return Metric("similarity", similarity=own.similarity if isinstance(own, MetricSpec) and own.similarity else SimilaritySpec())
        if spec == "judge":
            own = prompt.eval.metric
            if not (isinstance(own, MetricSpec) and own.judge is not None):
                raise MetricError(f"metric 'judge': {prompt.name} has no judge under eval.metric; name a judge file (judges/NAME.yaml)",
                                  value="judge")
            spec = own
        elif Path(spec).suffix in (".yaml", ".yml"):
            spec = MetricSpec(judge=spec)
        else:
            return Metric(spec, function=check_metric_name(spec, root))
    if spec.similarity is not None:
        return Metric("similarity", similarity=spec.similarity)
    judge = spec.judge
    if isinstance(judge, str):
        from promptops.evaluation._judges import judge_path, load_judge_file

        judge = load_judge_file(judge_path(judge, root))
    return Metric("judge", judge=judge)
