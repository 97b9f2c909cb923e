"""Running an eval: a prompt over an eval split, measuring quality, cost, tokens and latency.

Returns an `EvalResult` (plain data); logging it to MLflow is `tracking`'s job.

Each answer carries the model's confidence in the labels it chose, when the model reports one
(`promptops.models._confidence`). A prompt with `guardrails.output.min_confidence` is also scored
as it would serve: `coverage` is the share of answers confident enough to be returned rather than
sent to review, `accuracy_at_threshold` the accuracy of those answers.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from promptops._secrets import error_line
from promptops.artifact import Prompt, find_project_root
from promptops.evaluation._data import Dataset, Example, load_dataset
from promptops.errors import PromptopsError
from promptops.evaluation._metrics import Metric, accuracy, field_scores, is_correct, resolve_metric, schema_validity

if TYPE_CHECKING:
    from promptops.evaluation._judges import Judge, Judgement
    from promptops.artifact import JudgeSpec, MetricSpec

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class ExampleResult:
    """One example's answer and what producing it took."""

    index: int
    source: str
    inputs: dict[str, Any]
    expected: dict[str, Any]
    predicted: Optional[dict[str, Any]]
    correct: bool
    error: Optional[str]
    parse_failure: bool
    input_tokens: int
    output_tokens: int
    latency_s: float
    model_calls: int
    cache_hits: int
    cost_usd: Optional[float]
    truncated: bool = False  # an answer stopped at max_tokens
    truncated_at_tokens: Optional[int] = None  # the max_tokens it hit
    confidence_by_field: Optional[dict[str, float]] = None  # probability of each chosen label, as the model reported it
    confidence: Optional[float] = None  # the least sure label field's; None when a label field has none (nothing vouches for it)
    tool_calls: Optional[tuple[dict[str, Any], ...]] = None  # an agent's tool calls (promptops.program._tools.ToolCall dicts)
    steps: Optional[int] = None  # an agent's loop steps
    expected_tools: Optional[tuple[dict[str, Any], ...]] = None  # the row's expected tool calls, when it gives them
    score: Optional[float] = None  # the primary metric's value on this example, when it is a mean of such values
    judgement: "Optional[Judgement]" = None  # the judge's score, reason and cost, under a judge metric
    similarity: Optional[float] = None  # cosine similarity of answer and reference, when the row has a reference


@dataclass(frozen=True)
class EvalResult:
    """Quality, cost, tokens and latency of one prompt on one split."""

    prompt: str
    prompt_hash: str
    model: str
    dataset: str
    split: str
    n: int
    metric: str
    score: float
    metrics: dict[str, float]
    cost_usd: Optional[float]
    input_tokens: int
    output_tokens: int
    latency_p50_s: float
    latency_p95_s: float
    model_calls: int
    cache_hits: int
    errors: int
    parse_failures: int
    wall_time_s: float
    examples: tuple[ExampleResult, ...] = field(repr=False)
    run_id: Optional[str] = None
    data_digest: Optional[str] = None  # `Dataset.digest` of the rows scored
    truncated: int = 0  # answers that stopped at max_tokens (often parse failures or wrong answers too)
    truncated_at_tokens: Optional[int] = None  # the max_tokens they hit
    min_confidence: Optional[float] = None  # the prompt's guardrails.output.min_confidence, which coverage is measured at
    judge: "Optional[JudgeSpec]" = field(default=None, repr=False)  # the judge that scored the answers, under a judge metric

    @property
    def truncation_warning(self) -> Optional[str]:
        """One sentence when answers were cut off at max_tokens, e.g. "3 answers hit max_tokens 64: raise model.max_tokens"."""
        if not self.truncated:
            return None
        limit = f" {self.truncated_at_tokens}" if self.truncated_at_tokens else ""
        answers = "answer" if self.truncated == 1 else "answers"
        return f"{self.truncated} {answers} hit max_tokens{limit}: raise model.max_tokens"

    @property
    def confidence_warning(self) -> Optional[str]:
        """One sentence when a confidence threshold is set but no answer reported a confidence to compare with it."""
        if self.min_confidence is None or any(r.confidence is not None for r in self.examples):
            return None
        return (f"no answer reported a label confidence, so none reaches min_confidence {self.min_confidence:g}: a hosted model"
                " needs model.params logprobs: true")

    def rows(self, which: str = "all") -> list[dict[str, Any]]:
        """Every row (`all`), the wrong ones (`wrong`: not correct, or failed) or those held for review (`held`: below the
        prompt's min_confidence), each as input, expected, predicted, correct and confidence: `eval --rows`."""
        if which not in ROW_FILTERS:
            raise ValueError(f"rows must be one of {', '.join(ROW_FILTERS)}, not {which!r}")
        chosen = []
        for example in self.examples:
            held = (self.min_confidence is not None and example.confidence is not None
                    and example.confidence < self.min_confidence)
            if which == "wrong" and example.correct and not example.error:
                continue
            if which == "held" and not held:
                continue
            chosen.append({"row": example.source, "inputs": example.inputs, "expected": example.expected,
                           "predicted": example.predicted, "correct": example.correct, "confidence": example.confidence,
                           "held": held, "score": example.score, "error": example.error})
        return chosen

    def summary(self) -> dict[str, Any]:
        """Everything but the per-example rows, flat, for `--json` and notebooks."""
        data = {key: value for key, value in asdict(self).items() if key not in ("examples", "metrics", "judge")}
        warnings = [warning for warning in (self.truncation_warning, self.confidence_warning) if warning]
        return {**data, **self.metrics, "warnings": warnings}


ROW_FILTERS = ("all", "wrong", "held")


def default_threads(model_id: str) -> int:
    # The embedded model serialises calls on one llama.cpp context; more threads only queue.
    from promptops.models import is_local

    return 1 if is_local(model_id) else 8


@dataclass(frozen=True)
class EvalOptions:
    """Which rows and how they are answered: what `compare`, `check` and the gates pass down as one value."""

    data: Optional[str | Path] = None  # a folder of splits or one file with a split column; default: the prompt's eval.data
    split: str = "dev"
    limit: Optional[int] = None  # the first N rows only
    model: Optional[str] = None  # a model string overriding the prompts'
    metric: "str | MetricSpec | Metric | None" = None  # overriding the prompt's (a comparison uses B's)
    threads: Optional[int] = None  # parallel requests; default: 1 for local models, 8 for hosted
    cache: bool = True  # answer from DSPy's cache when it has the answer


def evaluate(
    prompt: Prompt,
    *,
    data: Optional[str | Path] = None,
    split: str = "dev",
    model: Optional[str] = None,
    limit: Optional[int] = None,
    threads: Optional[int] = None,
    cache: bool = True,
    metric: "str | MetricSpec | Metric | None" = None,
    dataset: Optional[Dataset] = None,
    on_progress: Optional[ProgressCallback] = None,
) -> EvalResult:
    """Run `prompt` over `split` of its eval set (or `data`) and measure it.

    Under a judge metric each answer is also scored by the judge, whose calls are metered apart
    (`judge_calls`, `judge_cost_usd`); under similarity, answers are compared with the references.
    """
    from promptops.program import build_program

    from promptops.models import check_model_id, check_model_params

    check_model_id(model or prompt.model.id)  # an unknown model fails before the eval set is read
    check_model_params(prompt.model.model_copy(update={"id": model}) if model else prompt.model)
    scoring = resolve_metric(metric, prompt, find_project_root())
    if scoring.judge is not None:
        check_model_id(scoring.judge.model_id)
    dataset = (dataset or load_dataset(prompt, data, split)).head(limit)
    if not len(dataset):
        raise PromptopsError(f"{dataset.path}: split {split!r} has no examples to evaluate")
    _check_references(scoring, dataset)
    program = build_program(prompt, model=model, cache=cache)
    model_id = program.lm.model
    threads = max(1, threads or default_threads(model_id))
    judge = None
    if scoring.judge is not None:
        from promptops.evaluation._judges import Judge

        judge = Judge(scoring.judge, cache=cache)
        threads = min(threads, max(1, default_threads(judge.model)))

    started = time.perf_counter()
    results = _run_examples(program, prompt, dataset.examples, threads, on_progress, judge)
    results = _with_similarity(prompt, scoring, results)
    wall_time_s = time.perf_counter() - started

    failed = [r for r in results if r.error and not r.parse_failure]
    if len(failed) == len(results):
        raise PromptopsError(f"all {len(results)} examples failed on {model_id}; the first error was: {failed[0].error}")

    pairs = [(r.expected, r.predicted) for r in results]
    metrics = _quality_metrics(prompt, pairs, results, scoring)
    metric = scoring.name
    min_confidence = prompt.guardrails.output.min_confidence
    if min_confidence is not None:
        metrics.update(coverage_metrics(results, min_confidence))
    if prompt.is_agent:
        metrics.update(agent_metrics(results, metrics[scoring.key]))
    latencies = [r.latency_s for r in results if r.model_calls or r.cache_hits]
    costs = [r.cost_usd for r in results]
    return EvalResult(
        prompt=prompt.name,
        prompt_hash=prompt.content_hash,
        model=model_id,
        dataset=_display_path(dataset.path),
        split=split,
        n=len(results),
        metric=metric,
        score=metrics[scoring.key],
        metrics=metrics,
        cost_usd=None if any(c is None for c in costs) else round(sum(costs), 10),  # type: ignore[arg-type]
        input_tokens=sum(r.input_tokens for r in results),
        output_tokens=sum(r.output_tokens for r in results),
        latency_p50_s=_percentile(latencies, 50),
        latency_p95_s=_percentile(latencies, 95),
        model_calls=sum(r.model_calls for r in results),
        cache_hits=sum(r.cache_hits for r in results),
        errors=len(failed),
        parse_failures=sum(r.parse_failure for r in results),
        wall_time_s=round(wall_time_s, 3),
        examples=tuple(results),
        data_digest=dataset.digest,
        truncated=sum(r.truncated for r in results),
        truncated_at_tokens=max((r.truncated_at_tokens for r in results if r.truncated_at_tokens), default=None),
        min_confidence=min_confidence,
        judge=scoring.judge,
    )


def coverage_metrics(results: "list[ExampleResult] | tuple[ExampleResult, ...]", min_confidence: float) -> dict[str, float]:
    """`coverage`: the share of rows whose answer is at least `min_confidence` sure (a row without a confidence is
    not); `accuracy_at_threshold`: the accuracy over those rows, absent when there are none."""
    covered = [r for r in results if r.confidence is not None and r.confidence >= min_confidence]
    metrics = {"coverage": round(len(covered) / len(results), 6) if results else 0.0}
    if covered:
        metrics["accuracy_at_threshold"] = round(sum(r.correct for r in covered) / len(covered), 6)
    return metrics


def agent_metrics(results: "list[ExampleResult] | tuple[ExampleResult, ...]", task_success: float) -> dict[str, float]:
    """An agent's task-level figures: task success (the primary metric on the final outputs), tool-call correctness
    in each mode, argument match, steps, model and tool calls, cost and latency per task, approvals, unsafe actions."""
    from promptops.evaluation._trajectories import score_trajectory, trajectory_metrics

    scores = [score_trajectory(list(r.expected_tools) if r.expected_tools is not None else None, list(r.tool_calls or ()),
                               steps=r.steps or 0, model_calls=r.model_calls + r.cache_hits) for r in results]
    metrics = {"task_success": task_success, **trajectory_metrics(scores)}
    costs = [r.cost_usd for r in results]
    if results and all(cost is not None for cost in costs):
        metrics["cost_per_task_usd"] = sum(costs) / len(results)  # type: ignore[arg-type]
    if results:
        metrics["latency_per_task_s"] = sum(r.latency_s for r in results) / len(results)
    return {key: round(value, 9) for key, value in metrics.items()}


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(find_project_root().resolve()))
    except ValueError:
        return str(path)


def _quality_metrics(prompt: Prompt, pairs, results: list[ExampleResult], scoring: Metric) -> dict[str, float]:
    metrics = {"schema_validity": schema_validity([r.predicted for r in results], prompt)}
    referenced = [(expected, predicted) for expected, predicted in pairs if expected]
    if referenced:  # label match and F1 need references; rows a judge scores by rubric alone have none
        metrics["accuracy"] = accuracy(referenced, prompt.outputs)
        scores = field_scores(referenced, prompt.outputs)
        metrics["f1"] = scores.pop("micro").f1
        if len(scores) > 1:
            for name, score in scores.items():
                metrics[f"f1/{name}"] = score.f1
                metrics[f"precision/{name}"] = score.precision
                metrics[f"recall/{name}"] = score.recall
    if scoring.function is not None:
        values = []
        for result in results:
            if result.predicted is None:
                values.append(0.0)
                continue
            try:
                values.append(float(scoring.function({**result.inputs, **result.expected}, result.predicted)))
            except Exception as exc:
                raise PromptopsError(f"metric {scoring.name!r} raised {type(exc).__name__} on {result.source}: {exc}") from None
        results[:] = [dataclasses.replace(r, score=value) for r, value in zip(results, values)]
        metrics[scoring.key] = sum(values) / len(values)
    similarities = [r.similarity for r in results if r.similarity is not None]
    if similarities:
        threshold = scoring.similarity.threshold if scoring.similarity else SIMILARITY_THRESHOLD
        metrics["similarity"] = sum(similarities) / len(similarities)
        metrics["similarity_pass_rate"] = sum(value >= threshold for value in similarities) / len(similarities)
    if scoring.name == "schema_validity":
        results[:] = [dataclasses.replace(r, score=schema_validity([r.predicted], prompt)) for r in results]
    metrics = {key: round(value, 6) for key, value in metrics.items()}
    judgements = [r.judgement for r in results if r.judgement is not None]
    if scoring.judge is not None and judgements:
        metrics["judge"] = round(sum(j.score for j in judgements) / len(judgements), 6)
        metrics["judge_pass_rate"] = round(sum(j.passed for j in judgements) / len(judgements), 6)
        metrics["judge_calls"] = sum(j.model_calls for j in judgements)
        metrics["judge_cache_hits"] = sum(j.cache_hits for j in judgements)
        metrics["judge_errors"] = sum(j.error is not None for j in judgements)
        costs = [j.cost_usd for j in judgements]
        if all(cost is not None for cost in costs):
            metrics["judge_cost_usd"] = round(sum(costs), 10)  # type: ignore[arg-type]
    return metrics


SIMILARITY_THRESHOLD = 0.7  # a reported similarity's pass mark when the primary metric is not similarity


def _check_references(scoring: Metric, dataset: Dataset) -> None:
    """A metric that compares with references refuses a row without them, naming it."""
    if not scoring.needs_references:
        return
    missing = next((example for example in dataset.examples if not example.expected), None)
    if missing is not None:
        raise PromptopsError(f"{missing.source}: this row has no reference output, which metric {scoring.name!r} compares"
                             " with; add one, or score by a rubric with a judge (eval.metric: {judge: {rubric: ...}})")


def _with_similarity(prompt: Prompt, scoring: Metric, results: list[ExampleResult]) -> list[ExampleResult]:
    """Each answer's similarity to its reference: the primary metric under `similarity`, reported beside a judge's score
    when the rows have references and the embedder is installed."""
    text_fields = [spec.name for spec in prompt.outputs if spec.type == "string"]
    if not text_fields or scoring.name not in ("similarity", "judge"):
        return results
    if not any(r.expected for r in results):
        return results
    from promptops.evaluation import _similarity as similarity

    from promptops.errors import ModelUnavailableError
    from promptops.artifact import SimilaritySpec

    spec = scoring.similarity or SimilaritySpec()
    pairs = [(index, name) for index, r in enumerate(results) if r.expected for name in text_fields]
    answers = [str(((results[i].predicted or {}).get(name)) or "") for i, name in pairs]
    references = [str(results[i].expected.get(name) or "") for i, name in pairs]
    try:
        values = similarity.similarities(answers, references, spec.model, api_base=spec.api_base)
    except ModelUnavailableError:
        if scoring.similarity is not None:
            raise
        return results  # beside a judge, similarity is reported where the offline embedder is installed, never required
    per_example: dict[int, list[float]] = {}
    for (index, _), value in zip(pairs, values):
        per_example.setdefault(index, []).append(0.0 if results[index].predicted is None else float(value))
    updated = list(results)
    for index, found in per_example.items():
        value = round(sum(found) / len(found), 6)
        if scoring.name == "similarity":
            updated[index] = dataclasses.replace(updated[index], similarity=value, score=value, correct=value >= spec.threshold)
        else:
            updated[index] = dataclasses.replace(updated[index], similarity=value)
    return updated


def _run_examples(program, prompt: Prompt, examples, threads: int, on_progress, judge: "Optional[Judge]" = None) -> list[ExampleResult]:
    if threads == 1:  # in the calling thread: nothing to coordinate, and Ctrl-C lands where it is expected
        results = []
        for index, example in enumerate(examples):
            results.append(_run_one(program, prompt, index, example, judge))
            if on_progress:
                on_progress(index + 1, len(examples))
        return results
    results: list[Optional[ExampleResult]] = [None] * len(examples)
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="promptops-eval")
    try:
        futures = {executor.submit(_run_one, program, prompt, i, ex, judge): i for i, ex in enumerate(examples)}
        done = 0
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            done += 1
            if on_progress:
                on_progress(done, len(examples))
    except BaseException:
        # Ctrl-C: drop the queue, let the calls in flight finish, leave nothing half-written.
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return [r for r in results if r is not None]


def _run_one(program, prompt: Prompt, index: int, example: Example, judge: "Optional[Judge]" = None) -> ExampleResult:
    from dspy.utils.exceptions import AdapterParseError

    from promptops.models import least_sure
    from promptops.models import metering
    from promptops.program import prediction_values

    predicted, error, parse_failure = None, None, False
    from promptops.program import running

    task = _agent_task(prompt)  # an agent's calls are kept even when the task fails half-way
    with metering(reports_truncation=True) as meter, running(task):  # the result counts truncated answers
        try:
            predicted = prediction_values(prompt, program(**example.inputs))
        except AdapterParseError as exc:
            error, parse_failure = error_line(exc), True
        except Exception as exc:  # one bad answer must not end the eval; it is counted and shown
            error = error_line(exc)
    confidence_by_field = meter.confidence if predicted is not None else None
    _, confidence = least_sure(confidence_by_field, prompt.label_fields)
    judgement = judge.score(example.inputs, predicted, example.expected or None) if judge is not None else None
    return ExampleResult(
        index=index,
        source=example.source,
        inputs=example.inputs,
        expected=example.expected,
        predicted=predicted,
        correct=judgement.passed if judgement is not None else bool(example.expected) and is_correct(example.expected, predicted, prompt.outputs),
        error=error,
        parse_failure=parse_failure,
        input_tokens=meter.input_tokens,
        output_tokens=meter.output_tokens,
        latency_s=round(meter.latency_s, 6),
        model_calls=meter.model_calls,
        cache_hits=meter.cache_hits,
        cost_usd=meter.cost_usd,
        truncated=bool(meter.truncated),
        truncated_at_tokens=meter.truncated_at_tokens,
        confidence_by_field=confidence_by_field,
        confidence=confidence,
        tool_calls=tuple(call.as_dict() for call in task.calls) if task is not None else None,
        steps=_steps(task) if task is not None else None,
        expected_tools=example.expected_tools,
        score=judgement.score if judgement is not None else None,
        judgement=judgement,
    )


def _agent_task(prompt: Prompt) -> Any:
    """A fresh `TaskRun` per example for an agent: no approver, so every call that needs approval is denied."""
    if not prompt.is_agent:
        return None
    from promptops.program import TaskRun

    return TaskRun(prompt=prompt.name)


def _steps(task: Any) -> int:
    """Loop steps of the task as the program counted them (a task that failed half-way: at least one per tool call)."""
    return max(task.steps, len(task.calls))


def _percentile(values: list[float], percent: float) -> float:
    if not values:
        return 0.0
    import numpy

    return round(float(numpy.percentile(values, percent)), 6)
