"""Judged evals in MLflow's GenAI views: judges on the Judges page, eval rows on the Datasets page,
one trace per example with the judge's verdict as a feedback assessment, and judge checks as runs.

An eval whose examples carry judgements or similarities gets, beside its run:

- the judge registered in the prompt's experiment (`register_judge`): an MLflow `make_judge`
  judge with the rubric as its instructions, one version per rubric, model and scale;
- the rows scored as an MLflow evaluation dataset (`register_eval_dataset`), one per prompt,
  split and data digest, logged as an input of the run;
- one trace per example in the run (`log_example_assessments`): the inputs as the request, the
  answer as the response, the expected outputs as expectations, the judge's verdict as feedback
  named after the judge (pass/fail as True/False, 1-5 as an int) with its reason as the rationale,
  and the similarity as feedback `similarity`.

MLflow's own evaluation harness (`mlflow.genai.evaluate`) is not used: promptops has already run
the program and the judge, with its own metering and budget, and only records what they gave.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import TYPE_CHECKING, Any, Optional

from promptops._secrets import redact, redact_data, redact_mapping
from promptops.errors import TrackingError
from promptops.tracking._store import _duplicate_row, _first_line, _mlflow, display_uri

if TYPE_CHECKING:
    from promptops.artifact import Prompt
    from promptops.evaluation import EvalResult, ExampleResult
    from promptops.evaluation import Judgement
    from promptops.artifact import JudgeSpec

_LOCK = threading.Lock()
_JUDGE_VERSIONS: dict[tuple[str, str, str], int] = {}  # (store, experiment, judge definition digest) → version
_DATASETS: dict[tuple[str, str], Any] = {}  # (store, dataset name) → MLflow EvaluationDataset
_MAX_VALUE_CHARS = 20_000  # a span's inputs or outputs; an assessment's value or rationale
JUDGE_CHECK_EXPERIMENT = "judges/{name}"
SIMILARITY = "similarity"


def is_judged(result: "EvalResult") -> bool:
    """Whether any example carries a judgement or a similarity (and so gets traces and assessments)."""
    return any(r.judgement is not None or r.similarity is not None for r in result.examples)


# --- the Judges page -------------------------------------------------------------------------


def judge_model_uri(model_id: str) -> str:
    """A promptops model string as MLflow's judge model URI (`provider:/model`).

    A hosted model keeps its provider (`openai/gpt-4o-mini` → `openai:/gpt-4o-mini`), so MLflow can
    run the registered judge itself. An embedded model (`local/...`, `gguf:...`) runs only inside
    promptops; it is registered under the provider `promptops` (`promptops:/local/smollm2-135m`),
    which MLflow accepts as a name and would refuse to call, rather than under a model it is not.
    """
    from promptops.models import is_local

    if is_local(model_id):
        return f"promptops:/{model_id}"
    provider, _, model = model_id.partition("/")
    return f"{provider}:/{model}"


def _judge_instructions(spec: "JudgeSpec", with_reference: bool) -> str:
    """The rubric and the scale, naming the fields MLflow fills in (`{{ inputs }}`, `{{ outputs }}`, `{{ expectations }}`)."""
    fields = "The request is in {{ inputs }} and the answer to grade in {{ outputs }}."
    if with_reference:
        fields += (" {{ expectations }} holds a correct answer for comparison; the answer need not match it"
                   " word for word.")
    if spec.scale == "pass_fail":
        scale = "Answer true if the answer meets the rubric (pass), false if it does not (fail)."
    else:
        scale = (f"Score it from 1 (does not meet the rubric at all) to 5 (fully meets it);"
                 f" {spec.passing_score} or more passes.")
    return f"Grade one answer against a rubric. {fields}\n\nRubric: {spec.rubric.strip()}\n\n{scale}"


def _make_judge(spec: "JudgeSpec", with_reference: bool) -> Any:
    from mlflow.genai.judges import make_judge

    from promptops.models import is_local

    model_id = spec.model_id
    where = ("MLflow cannot call it: promptops runs it in-process (promptops eval, promptops judge check)"
             if is_local(model_id) else "promptops runs it in evals; MLflow can too, with the provider's key")
    model = spec.model_spec
    return make_judge(
        name=spec.name,
        instructions=redact(_judge_instructions(spec, with_reference)),
        model=judge_model_uri(model_id),
        description=redact(f"promptops judge {spec.name} ({spec.scale}) on {model_id}; {where}."),
        feedback_value_type=bool if spec.scale == "pass_fail" else int,
        inference_params={"temperature": model.temperature, "max_tokens": model.max_tokens},
        generate_rationale_first=spec.reason_first,  # reason and verdict in the order promptops asks for them
    )


def _definition(judge: Any) -> dict[str, Any]:
    """What makes two registrations the same judge: the serialized judge without MLflow's version stamp."""
    dumped = dict(judge.model_dump())
    dumped.pop("mlflow_version", None)
    return dumped


def register_judge(spec: "JudgeSpec", experiment_id: str, *, with_reference: bool = True) -> int:
    """The judge on MLflow's Judges page of the experiment; returns its version.

    Registering the same judge again returns the version already there; a changed rubric, model,
    scale or reference use makes a new version (MLflow versions judges by name).
    """
    mlflow = _mlflow()
    from mlflow.exceptions import MlflowException
    from mlflow.genai.scorers import get_scorer

    try:
        judge = _make_judge(spec, with_reference)
        definition = _definition(judge)
        digest = hashlib.sha256(json.dumps(definition, sort_keys=True, default=str).encode()).hexdigest()
        key = (mlflow.get_tracking_uri(), experiment_id, digest)
        with _LOCK:
            if key in _JUDGE_VERSIONS:
                return _JUDGE_VERSIONS[key]
            try:
                latest = get_scorer(name=spec.name, experiment_id=experiment_id)
            except MlflowException:  # never registered here
                latest = None
            if latest is not None and _definition(latest) == definition:
                version = int(latest.scorer_version)
            else:
                version = int(judge.register(experiment_id=experiment_id).scorer_version)
            _JUDGE_VERSIONS[key] = version
            return version
    except Exception as exc:
        raise TrackingError(f"cannot register judge {spec.name!r} in MLflow at {display_uri()}: {_first_line(exc)}") from None


# --- the Datasets page -----------------------------------------------------------------------


def eval_dataset_name(prompt_name: str, split: str, digest: str) -> str:
    """`banking_summary/dev@3a9c41d2e0f1b7c5`: the prompt, the split, and the digest of the rows."""
    return f"{prompt_name}/{split}@{digest}"


def register_eval_dataset(result: "EvalResult", prompt_name: str, *, experiment_id: str, dataset_path: str,
                          data_digest: str) -> Any:
    """The rows the eval scored as an MLflow evaluation dataset (inputs and expectations per row), found again by name.

    Evals of the same rows (same prompt, split and `Dataset.digest`) share one dataset; other rows make another.
    MLflow keeps evaluation datasets only in a database store (sqlite here), not in `./mlruns`.
    """
    mlflow = _mlflow()
    name = eval_dataset_name(prompt_name, result.split, data_digest)
    key = (mlflow.get_tracking_uri(), name)
    try:
        from mlflow.genai.datasets import create_dataset, search_datasets

        with _LOCK:
            if key in _DATASETS:
                return _DATASETS[key]
            found = search_datasets(experiment_ids=[experiment_id], filter_string=f"name = '{name}'", max_results=1)
            if found:
                dataset = found[0]
            else:
                dataset = create_dataset(name=name, experiment_id=[experiment_id], tags=redact_mapping({
                    "promptops.prompt": prompt_name, "promptops.split": result.split, "promptops.data_digest": data_digest,
                    "promptops.dataset": dataset_path, "promptops.rows": str(result.n)}))
                dataset.merge_records([_record(r, dataset_path) for r in result.examples])
            _DATASETS[key] = dataset
            return dataset
    except Exception as exc:
        raise TrackingError(f"cannot record the rows of {dataset_path} ({result.split}) as an MLflow evaluation dataset"
                            f" at {display_uri()}: {_first_line(exc)}") from None


def _record(example: "ExampleResult", dataset_path: str) -> dict[str, Any]:
    record: dict[str, Any] = {
        "inputs": redact_data(example.inputs, max_chars=_MAX_VALUE_CHARS),
        "source": {"source_type": "DOCUMENT", "source_data": {"doc_uri": dataset_path, "row": example.source}},
    }
    if example.expected:
        record["expectations"] = redact_data(example.expected, max_chars=_MAX_VALUE_CHARS)
    return record


def link_dataset_to_run(dataset: Any, run_id: str, split: str) -> None:
    """The evaluation dataset as an input of the eval run, beside the file's digest the run already names."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    inputs = [DatasetInput(dataset=dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, split)])]
    try:
        try:
            _mlflow().MlflowClient().log_inputs(run_id, datasets=inputs)
        except Exception as exc:
            if not _duplicate_row(exc):
                raise
            _mlflow().MlflowClient().log_inputs(run_id, datasets=inputs)  # another process inserted it first: link that row
    except Exception as exc:
        raise TrackingError(f"cannot link evaluation dataset {dataset.name!r} to run {run_id}: {_first_line(exc)}") from None


# --- the run's traces and assessments --------------------------------------------------------


def log_example_assessments(
    run_id: str,
    result: "EvalResult",
    prompt: "Prompt",
    *,
    experiment_id: str,
    judge_version: Optional[int] = None,
    similarity_model: Optional[str] = None,
    model_id: Optional[str] = None,
) -> list[str]:
    """One trace per example in the eval run, carrying the row's expectations, the judge's feedback and the similarity;
    returns the trace ids in example order.

    Each trace is written whole, assessments included, when it ends (MLflow keeps the assessments
    logged while a trace is active and writes them with it): one trace and one span write per example
    instead of one more per assessment. It is written at once, as `mlflow.genai.evaluate` writes its
    traces (an evaluation's prediction context), not by the background exporter, whose flush waits
    about a second, nor shown in a notebook; then a search checks that every trace arrived, as the
    exporter only warns. A trace lasts as long as its example took, laid end to end up to now, so
    MLflow's list shows them in example order.
    """
    import time
    import uuid

    mlflow = _mlflow()
    from mlflow.entities import AssessmentSource, AssessmentSourceType, SpanType
    from mlflow.pyfunc.context import Context, set_prediction_context
    from mlflow.tracing.constant import TraceMetadataKey
    from mlflow.tracing.provider import safe_set_span_in_context

    human = AssessmentSourceType.HUMAN
    code = AssessmentSource(AssessmentSourceType.CODE, source_id=similarity_model or "promptops")
    linked = {"mlflow.assessment.sourceRunId": run_id}
    durations_ns = [max(int(example.latency_s * 1e9), 1_000_000) for example in result.examples]
    start_ns = time.time_ns() - sum(durations_ns)
    trace_ids: list[str] = []
    try:
        for example, duration_ns in zip(result.examples, durations_ns):
            with set_prediction_context(Context(request_id=uuid.uuid4().hex, is_evaluate=True)):  # written when it ends
                span = mlflow.start_span_no_context(
                    name=prompt.name, span_type=SpanType.CHAIN, inputs=redact_data(example.inputs, max_chars=_MAX_VALUE_CHARS),
                    tags={"promptops.kind": "eval", "promptops.source": example.source, "promptops.split": result.split,
                          "promptops.prompt_hash": result.prompt_hash},
                    metadata={TraceMetadataKey.SOURCE_RUN: run_id}, experiment_id=experiment_id, start_time_ns=start_ns)
                start_ns += duration_ns
                try:
                    with safe_set_span_in_context(span):  # the active trace: its assessments are written with it
                        _describe(span, example, result)
                        if model_id is not None:
                            mlflow.update_current_trace(model_id=model_id)
                        for name, value in example.expected.items():
                            mlflow.log_expectation(trace_id=span.trace_id, name=name, span_id=span.span_id, metadata=linked,
                                                   value=redact_data(value, max_chars=_MAX_VALUE_CHARS),
                                                   source=AssessmentSource(human, source_id=example.source))
                        if example.judgement is not None:
                            mlflow.log_assessment(span.trace_id, _judge_feedback(example.judgement, run_id, span.span_id,
                                                                                 judge_version))
                        if example.similarity is not None:
                            mlflow.log_feedback(trace_id=span.trace_id, name=SIMILARITY, value=float(example.similarity),
                                                source=code, span_id=span.span_id, metadata=linked)
                finally:
                    span.end(outputs=redact_data(example.predicted, max_chars=_MAX_VALUE_CHARS), end_time_ns=start_ns)
            trace_ids.append(span.trace_id)
        written = mlflow.search_traces(locations=[experiment_id], run_id=run_id, return_type="list", include_spans=False)
    except Exception as exc:
        raise TrackingError(f"cannot log the examples of run {run_id} as MLflow traces at {display_uri()}:"
                            f" {_first_line(exc)}") from None
    missing = set(trace_ids) - {trace.info.trace_id for trace in written}
    if missing:
        raise TrackingError(f"{len(missing)} of {len(trace_ids)} example traces of run {run_id} did not reach MLflow at"
                            f" {display_uri()} (is tracing disabled or sampled?); MLflow's warnings say why")
    return trace_ids


def _describe(span: Any, example: "ExampleResult", result: "EvalResult") -> None:
    """Tokens and cost where MLflow's trace list shows them, and whether the example failed."""
    from mlflow.entities import SpanStatusCode
    from mlflow.tracing.constant import SpanAttributeKey

    span.set_attribute(SpanAttributeKey.CHAT_USAGE, {"input_tokens": example.input_tokens, "output_tokens": example.output_tokens,
                                                     "total_tokens": example.input_tokens + example.output_tokens})
    if example.cost_usd is not None:
        span.set_attribute(SpanAttributeKey.LLM_COST, {"total_cost": example.cost_usd})
    span.set_attributes({"promptops.source": example.source, "promptops.correct": example.correct,
                         "promptops.latency_s": example.latency_s, "promptops.model": result.model})
    if example.error:
        span.set_status(SpanStatusCode.ERROR)
        span.set_attribute("promptops.error", redact(example.error))


def _judge_feedback(judgement: "Judgement", run_id: str, span_id: str, judge_version: Optional[int]) -> Any:
    """The judge's verdict as MLflow feedback: pass/fail as True/False (the UI shows them as a pass rate), 1-5 as an int."""
    from mlflow.entities import AssessmentError, AssessmentSource, AssessmentSourceType, Feedback
    from mlflow.tracing.constant import AssessmentMetadataKey as Key

    metadata = {Key.SOURCE_RUN_ID: run_id, Key.JUDGE_INPUT_TOKENS: str(judgement.input_tokens),
                Key.JUDGE_OUTPUT_TOKENS: str(judgement.output_tokens), "promptops.judge.score": f"{judgement.score:g}",
                "promptops.judge.passed": str(judgement.passed).lower(), "promptops.judge.model_calls": str(judgement.model_calls),
                "promptops.judge.cache_hits": str(judgement.cache_hits)}
    if judgement.cost_usd is not None:
        metadata[Key.JUDGE_COST] = f"{judgement.cost_usd:.10g}"
    if judge_version is not None:
        metadata.update({Key.SCORER_NAME: judgement.judge, Key.SCORER_VERSION: str(judge_version)})
    source = AssessmentSource(AssessmentSourceType.LLM_JUDGE, source_id=judgement.model)
    if judgement.value is None:
        error = AssessmentError(error_code="JUDGE_ERROR" if judgement.error else "NOTHING_TO_JUDGE",
                                error_message=redact(judgement.error or judgement.reason))
        return Feedback(name=judgement.judge, error=error, source=source, span_id=span_id, metadata=metadata)
    value: Any = judgement.value == "pass" if judgement.value in ("pass", "fail") else int(judgement.value)
    return Feedback(name=judgement.judge, value=value, rationale=redact_data(judgement.reason, max_chars=_MAX_VALUE_CHARS),
                    source=source, span_id=span_id, metadata=metadata)


def log_judged_eval(
    run_id: str,
    result: "EvalResult",
    prompt: "Prompt",
    *,
    judge: "Optional[JudgeSpec]",
    dataset_path: str,
    data_digest: str,
    similarity_model: Optional[str] = None,
    model_id: Optional[str] = None,
) -> list[str]:
    """Everything a judged eval adds to its run: the judge, the dataset, and a trace per example with its assessments."""
    mlflow = _mlflow()
    experiment_id = mlflow.get_run(run_id).info.experiment_id
    version = None
    if judge is not None:
        version = register_judge(judge, experiment_id, with_reference=any(r.expected for r in result.examples))
    dataset = register_eval_dataset(result, prompt.name, experiment_id=experiment_id, dataset_path=dataset_path,
                                    data_digest=data_digest)
    link_dataset_to_run(dataset, run_id, result.split)
    return log_example_assessments(run_id, result, prompt, experiment_id=experiment_id, judge_version=version,
                                   similarity_model=similarity_model, model_id=model_id)
