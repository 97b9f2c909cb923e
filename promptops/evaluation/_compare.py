"""Two versions of a prompt on the same examples, with the statistics that say whether the difference is real.

Both sides answer every example of one eval split; the examples pair up by position. The
quality difference gets a paired bootstrap interval and, on right/wrong per example, McNemar's
exact test; extraction prompts also get per-field F1 deltas with intervals; cost and latency
get their deltas. The comparison is logged as one MLflow run holding both sides.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from promptops.artifact import Prompt
from promptops.errors import PromptopsError
from promptops.evaluation._stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, Interval, McNemarResult, f1_from_counts, mcnemar, paired_bootstrap

if TYPE_CHECKING:
    from promptops.evaluation._data import Dataset
    from promptops.evaluation._run import EvalOptions, EvalResult, ExampleResult, ProgressCallback


class IncomparableError(PromptopsError):
    """Two versions that cannot answer the same examples: different fields, or rows only one of them accepts."""


@dataclass(frozen=True)
class Contender:
    """One side of a comparison: a prompt as of some version, and how to name it in a report."""

    reference: str  # what was asked for: banking_intent@v1
    label: str  # how the report names it: v1 (abc12345), production v2 (...), working file
    prompt: Prompt = field(repr=False)
    commit: Optional[str] = None


@dataclass(frozen=True)
class FieldDelta:
    """One output field's F1 on each side and the paired interval of B minus A."""

    field: str
    a_f1: float
    b_f1: float
    difference: Interval


@dataclass(frozen=True)
class ChangedExample:
    """An example one side got right and the other wrong."""

    source: str
    inputs: dict[str, Any]
    expected: dict[str, Any]
    a_predicted: Optional[dict[str, Any]]
    b_predicted: Optional[dict[str, Any]]
    b_correct: bool  # True: B fixed it; False: B broke it


@dataclass(frozen=True)
class Comparison:
    """A against B on the same examples; every difference is B minus A."""

    prompt: str
    a: Contender
    b: Contender
    model: str
    dataset: str
    split: str
    n: int
    metric: str
    a_score: float
    b_score: float
    difference: Interval  # of the primary metric
    exact_match: Interval  # of the share of examples with every output field right
    mcnemar: McNemarResult  # on every-field-right per example
    fields: tuple[FieldDelta, ...]  # extraction prompts (more than one output field)
    a_cost_usd: Optional[float]
    b_cost_usd: Optional[float]
    cost_per_example_usd: Optional[Interval]
    a_latency_p50_s: float
    b_latency_p50_s: float
    a_latency_p95_s: float
    b_latency_p95_s: float
    latency_per_example_s: Interval
    changed: tuple[ChangedExample, ...] = field(repr=False)
    a_result: "EvalResult" = field(repr=False)
    b_result: "EvalResult" = field(repr=False)
    seed: int = 0
    run_id: Optional[str] = None

    @property
    def primary_metric(self) -> str:
        """The metric the gate compares, without a user metric's module (`metrics:agree` reads `agree`)."""
        return _metric_key(self.metric)

    @property
    def regression(self) -> float:
        """How far B's primary metric is below A's (0 when it is not)."""
        return max(0.0, self.a_score - self.b_score)

    def summary(self) -> dict[str, Any]:
        """JSON-ready, without the per-example results, for `--json` and notebooks."""
        data = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.name not in ("a_result", "b_result", "changed", "a", "b")}
        for side in ("a", "b"):
            contender = getattr(self, side)
            data[side] = {"reference": contender.reference, "label": contender.label, "commit": contender.commit,
                          "prompt_hash": contender.prompt.content_hash}
        data["fixed"] = [c.source for c in self.changed if c.b_correct]
        data["broken"] = [c.source for c in self.changed if not c.b_correct]
        return data



# --- comparing two contenders -------------------------------------------------------------


def compare_contenders(
    a: Contender,
    b: Contender,
    options: "Optional[EvalOptions]" = None,
    *,
    dataset: "Optional[Dataset]" = None,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    on_progress: "Optional[ProgressCallback]" = None,
) -> Comparison:
    """Evaluate both on B's eval set (or `dataset`, or `options.data`; the test split unless `options` says), pair the
    examples and compute the statistics; nothing is logged."""
    from promptops.evaluation import _run as evaluation
    from promptops.evaluation._data import load_dataset
    from promptops.artifact import find_project_root
    from promptops.evaluation._metrics import resolve_metric

    options = options or evaluation.EvalOptions(split="test")
    _check_same_fields(a, b)
    dataset = (dataset or load_dataset(b.prompt, options.data, options.split)).head(options.limit)
    for example in dataset.examples:
        problem = a.prompt.check_example({**example.inputs, **example.expected}, outputs=bool(example.expected))
        if problem:
            raise IncomparableError(f"{example.source}: fits {b.label} but not {a.label}: {problem}")
    metric = resolve_metric(options.metric, b.prompt, find_project_root())  # B's metric (its judge, too) scores both sides
    run = dict(dataset=dataset, split=options.split, model=options.model, threads=options.threads, cache=options.cache, metric=metric,
               on_progress=on_progress)
    b_result = evaluation.evaluate(b.prompt, **run)
    same = a.prompt.content_hash == b.prompt.content_hash
    a_result = b_result if same else evaluation.evaluate(a.prompt, **run)  # one prompt, one set of answers
    return paired_comparison(a, b, a_result, b_result, resamples=resamples, confidence=confidence, seed=seed)


def _check_same_fields(a: Contender, b: Contender) -> None:
    """Both sides must read the same inputs and give the same outputs, or their scores do not pair."""
    a_fields = [f.name for f in a.prompt.inputs + a.prompt.outputs]
    b_fields = [f.name for f in b.prompt.inputs + b.prompt.outputs]
    if sorted(a_fields) != sorted(b_fields):
        raise IncomparableError(
            f"{a.prompt.name} {a.label} has fields {', '.join(a_fields)} but {b.label} has {', '.join(b_fields)}: "
            "only versions with the same inputs and outputs can be scored on the same examples")


def paired_comparison(
    a: Contender,
    b: Contender,
    a_result: "EvalResult",
    b_result: "EvalResult",
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Comparison:
    """The statistics of two evals of the same examples (no model calls: testable on any results)."""
    from promptops.evaluation._metrics import flatten

    a_examples, b_examples = a_result.examples, b_result.examples
    if [e.source for e in a_examples] != [e.source for e in b_examples]:
        raise PromptopsError(f"the evals of {a.label} and {b.label} did not answer the same examples, so they cannot be paired")
    bootstrap = dict(resamples=resamples, confidence=confidence, seed=seed)
    outputs = b.prompt.outputs
    a_right = np.array([e.correct for e in a_examples], dtype=float)
    b_right = np.array([e.correct for e in b_examples], dtype=float)
    exact_match = paired_bootstrap(a_right, b_right, **bootstrap)

    leaves = list(flatten({}, outputs))
    fields: tuple[FieldDelta, ...] = ()
    if len(leaves) > 1:
        a_counts, b_counts = _field_counts(a_examples, outputs, leaves), _field_counts(b_examples, outputs, leaves)
        deltas = []
        for position, leaf in enumerate(leaves):
            a_leaf, b_leaf = a_counts[:, position, :], b_counts[:, position, :]
            deltas.append(FieldDelta(leaf, float(f1_from_counts(a_leaf[None])[0]), float(f1_from_counts(b_leaf[None])[0]),
                                     paired_bootstrap(a_leaf, b_leaf, f1_from_counts, **bootstrap)))
        fields = tuple(deltas)

    metric = b_result.metric
    key = _metric_key(metric)
    if all(e.score is not None for e in (*a_examples, *b_examples)):  # a mean of per-example scores: a judge's, similarity
        difference = paired_bootstrap(np.array([e.score for e in a_examples], dtype=float),
                                      np.array([e.score for e in b_examples], dtype=float), **bootstrap)
    elif key == "accuracy":
        difference = exact_match
    elif key == "f1":
        a_micro, b_micro = _field_counts(a_examples, outputs, leaves).sum(axis=1), _field_counts(b_examples, outputs, leaves).sum(axis=1)
        difference = paired_bootstrap(a_micro, b_micro, f1_from_counts, **bootstrap)
    else:
        difference = paired_bootstrap(_example_scores(a_result, a.prompt, metric), _example_scores(b_result, b.prompt, metric), **bootstrap)

    a_costs, b_costs = [e.cost_usd for e in a_examples], [e.cost_usd for e in b_examples]
    cost = None
    if all(c is not None for c in a_costs + b_costs):
        cost = paired_bootstrap(np.array(a_costs, dtype=float), np.array(b_costs, dtype=float), **bootstrap)
    latency = paired_bootstrap(np.array([e.latency_s for e in a_examples]), np.array([e.latency_s for e in b_examples]), **bootstrap)
    changed = tuple(
        ChangedExample(y.source, y.inputs, y.expected, x.predicted, y.predicted, y.correct)
        for x, y in zip(a_examples, b_examples) if x.correct != y.correct
    )
    return Comparison(
        prompt=b.prompt.name, a=a, b=b,
        model=a_result.model if a_result.model == b_result.model else f"{a_result.model} vs {b_result.model}",
        dataset=b_result.dataset, split=b_result.split, n=b_result.n, metric=metric,
        a_score=a_result.score, b_score=b_result.score, difference=difference, exact_match=exact_match,
        mcnemar=mcnemar(a_right.astype(bool), b_right.astype(bool)), fields=fields,
        a_cost_usd=a_result.cost_usd, b_cost_usd=b_result.cost_usd, cost_per_example_usd=cost,
        a_latency_p50_s=a_result.latency_p50_s, b_latency_p50_s=b_result.latency_p50_s,
        a_latency_p95_s=a_result.latency_p95_s, b_latency_p95_s=b_result.latency_p95_s,
        latency_per_example_s=latency, changed=changed, a_result=a_result, b_result=b_result, seed=seed,
    )


def _field_counts(examples: "tuple[ExampleResult, ...]", outputs: list[Any], leaves: list[str]) -> np.ndarray:
    """(examples, fields, 3): true positives, false positives, false negatives of each field in each example."""
    from promptops.evaluation._metrics import field_scores

    counts = np.zeros((len(examples), len(leaves), 3))
    for row, example in enumerate(examples):
        scores = field_scores([(example.expected, example.predicted)], outputs)
        for column, leaf in enumerate(leaves):
            score = scores[leaf]
            counts[row, column] = (score.true_positives, score.false_positives, score.false_negatives)
    return counts


def _example_scores(result: "EvalResult", prompt: Prompt, metric: str) -> np.ndarray:
    """Per-example values of a metric that is a mean over examples: schema validity or a user metric."""
    from promptops.artifact import find_project_root
    from promptops.evaluation._metrics import check_metric_name, schema_validity

    if metric == "schema_validity":
        return np.array([schema_validity([e.predicted], prompt) for e in result.examples])
    function = check_metric_name(metric, find_project_root())
    if function is None:
        raise PromptopsError(f"metric {metric!r} has no per-example value to compare")
    return np.array([0.0 if e.predicted is None else float(function({**e.inputs, **e.expected}, e.predicted)) for e in result.examples])


def _metric_key(metric: str) -> str:
    return metric.partition(":")[2] or metric


def _plain(value: Any) -> Any:
    """Dataclasses (intervals, test results) as dicts, tuples of them as lists; the rest as it is."""
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value
