"""MLflow runs: one per eval, per comparison of two versions, and per promotion or rollback (the audit record).

Each run goes into the prompt's experiment and is written in one go by `_log_run`; reading back
(`load_run`, `load_table`, `last_evals`) is for promotion, tests and notebooks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from promptops._secrets import redact, redact_data, redact_mapping, redact_yaml
from promptops.artifact import Prompt, find_project_root
from promptops.errors import PromptopsError, TrackingError
from promptops.tracking._judging import JUDGE_CHECK_EXPERIMENT, is_judged, log_judged_eval, register_judge
from promptops.tracking._store import _duplicate_row, _experiment, _first_line, _mlflow, display_uri, save_unlogged

if TYPE_CHECKING:
    from promptops.evaluation import Comparison
    from promptops.evaluation import Dataset
    from promptops.evaluation import JudgeCheck
    from promptops.evaluation import EvalResult
    from promptops.artifact import JudgeSpec


def log_eval(
    result: "EvalResult",
    prompt: Prompt,
    *,
    prompt_file: Optional[Path] = None,
    git_commit: Optional[str] = None,
    git_dirty: bool = False,
    root: Optional[Path] = None,
    judge: "Optional[JudgeSpec]" = None,
) -> str:
    """One MLflow run per eval: params, metrics, the prompt as evaluated, the rows scored and a per-example table.

    The rows scored are the run's dataset input (name, digest, row count, context = split), so
    MLflow's run list shows which data each run used; the digest is `Dataset.digest`.

    An eval scored by a judge or by similarity also gets MLflow's GenAI views (`_judging`): the judge
    on the Judges page, the rows on the Datasets page and a trace per example with its assessments.
    `judge` is the spec the eval ran with; without it, the prompt's own judge when the names match.
    """
    from promptops.evaluation import split_size

    root = root or find_project_root()
    dataset = _relative(result.dataset, root)
    data_digest = result.data_digest or _scored_rows(result).digest
    split_rows = split_size(root / dataset, result.split)
    params = redact_mapping(
        {
            "prompt": prompt.name,
            "prompt_hash": result.prompt_hash,
            "git_commit": git_commit or "none",
            "model": result.model,
            "temperature": prompt.model.temperature,
            "max_tokens": prompt.model.max_tokens,
            "dataset": dataset,
            "data_digest": data_digest,
            "split": result.split,
            "n": result.n,
            "split_rows": split_rows if split_rows is not None else "unknown",
            "metric": result.metric,
            "demos": len(prompt.demos),
        }
    )
    metrics = {
        **{_metric_name(key): value for key, value in result.metrics.items()},
        "score": result.score,
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "latency_p50_s": result.latency_p50_s,
        "latency_p95_s": result.latency_p95_s,
        "model_calls": result.model_calls,
        "cache_hits": result.cache_hits,
        "errors": result.errors,
        "parse_failures": result.parse_failures,
        "truncated": result.truncated,
        "wall_time_s": result.wall_time_s,
    }
    if result.cost_usd is not None:
        metrics["cost_usd"] = result.cost_usd
    if result.min_confidence is not None:
        params["min_confidence"] = result.min_confidence
    tags = {"promptops.kind": "eval", "promptops.git_dirty": str(git_dirty).lower(), "promptops.metric": result.metric}
    if prompt.eval.threshold is not None:
        tags["promptops.threshold"] = f"{prompt.eval.threshold:g}"
    table = predictions_table(result, prompt)
    columns = [spec.name for spec in prompt.inputs] + [f"expected.{spec.name}" for spec in prompt.outputs]
    scored = {column: table[column] for column in columns}
    texts = {f"prompt/{prompt_file.name if prompt_file else prompt.name + '.yaml'}": prompt.to_yaml()}
    try:
        mlflow = _mlflow(root)
        _experiment(mlflow, prompt.name)
        model_id = None
        if prompt.is_agent:
            from promptops.tracking._models import agent_model_id

            try:
                model_id = agent_model_id(prompt, commit=None if git_dirty else git_commit)
            except Exception as exc:
                raise TrackingError(f"cannot record {prompt.name} as an MLflow LoggedModel at {display_uri(root)}:"
                                    f" {_first_line(exc)}") from None
            params["logged_model_id"] = model_id
        run_id = _log_run(
            mlflow,
            f"eval {prompt.name} {result.split}",
            tags=tags,
            params=params,
            metrics=metrics,
            dataset=(_mlflow_dataset(mlflow, scored, dataset, data_digest), result.split),
            texts=texts,
            tables={"predictions.json": table},
            model_id=model_id,
            failure=f"cannot log the eval to MLflow at {display_uri(root)}",
        )
    except TrackingError as exc:  # the model calls are paid for: the run is kept in a file instead
        raise save_unlogged("eval", prompt.name, _record(tags, params, metrics, texts, {"predictions.json": table}), exc,
                            result=result, root=root) from None
    if is_judged(result):
        try:
            log_judged_eval(run_id, result, prompt, judge=judge or result.judge or _prompt_judge(result, prompt, root),
                            dataset_path=dataset, data_digest=data_digest,
                            similarity_model=_similarity_model(result, prompt, root), model_id=model_id)
        except TrackingError as exc:
            raise TrackingError(f"eval run {run_id} is logged, but not its assessments: {exc}") from None
    return run_id


def _prompt_judge(result: "EvalResult", prompt: Prompt, root: Path) -> "Optional[JudgeSpec]":
    """The prompt's own judge, when it is the one that scored the examples (same name and model)."""
    from promptops.evaluation import resolve_metric

    scored = {(r.judgement.judge, r.judgement.model) for r in result.examples if r.judgement is not None}
    if not scored:
        return None
    try:
        own = resolve_metric(None, prompt, root).judge
    except PromptopsError:  # the prompt's metric names a judge file that is gone or broken: register no judge
        return None
    return own if own is not None and (own.name, own.model_id) in scored else None


def _similarity_model(result: "EvalResult", prompt: Prompt, root: Path) -> Optional[str]:
    """The embedder the similarities came from: the prompt's similarity settings, else the default."""
    if not any(r.similarity is not None for r in result.examples):
        return None
    from promptops.evaluation import resolve_metric

    spec = resolve_metric("similarity", prompt, root).similarity
    return spec.model if spec is not None else None


def _scored_rows(result: "EvalResult") -> "Dataset":
    from promptops.evaluation import Dataset, Example

    return Dataset(Path(result.dataset), result.split, tuple(Example(r.inputs, r.expected, r.source) for r in result.examples))


def _mlflow_dataset(mlflow: Any, columns: dict[str, list[Any]], name: str, digest: str) -> Any:
    """The rows as an MLflow dataset: name, digest, schema and row count are logged, the rows themselves stay in the file."""
    import pandas

    source = mlflow.data.sources.LocalArtifactDatasetSource(name)  # given, not resolved: a bare path resolves two ways and warns
    return mlflow.data.from_pandas(pandas.DataFrame(columns), source=source, name=name, digest=digest)


def predictions_table(result: "EvalResult", prompt: Prompt) -> dict[str, list[Any]]:
    """Columns of the per-example table: inputs, expected and predicted per field, cost of each answer; when the model
    reported label confidences, the answer's (its least sure field's) and, for several fields, each field's; under a
    judge or similarity, each example's score, the judge's value, reason and cost, and the similarity."""
    table: dict[str, list[Any]] = {"source": [r.source for r in result.examples]}
    for spec in prompt.inputs:
        table[spec.name] = [_cell(r.inputs.get(spec.name)) for r in result.examples]
    for spec in prompt.outputs:
        table[f"expected.{spec.name}"] = [_cell(r.expected.get(spec.name)) for r in result.examples]
        table[f"predicted.{spec.name}"] = [_cell((r.predicted or {}).get(spec.name)) for r in result.examples]
    table["correct"] = [r.correct for r in result.examples]
    table["error"] = [r.error or "" for r in result.examples]
    table["input_tokens"] = [r.input_tokens for r in result.examples]
    table["output_tokens"] = [r.output_tokens for r in result.examples]
    table["latency_s"] = [r.latency_s for r in result.examples]
    table["cached"] = [bool(r.cache_hits and not r.model_calls) for r in result.examples]
    table["truncated"] = [r.truncated for r in result.examples]
    if any(r.tool_calls is not None for r in result.examples):  # an agent: each example's trajectory
        from promptops.evaluation import calls_match, format_calls, unsafe_actions

        table["steps"] = [r.steps for r in result.examples]
        table["tool_calls"] = [format_calls(list(r.tool_calls or ())) for r in result.examples]
        table["expected_tools"] = [format_calls(list(r.expected_tools)) if r.expected_tools is not None else ""
                                   for r in result.examples]
        table["tools_correct"] = [calls_match(list(r.expected_tools), list(r.tool_calls or ()), "strict")
                                  if r.expected_tools is not None else None for r in result.examples]
        table["unsafe_actions"] = [unsafe_actions(list(r.tool_calls or ())) for r in result.examples]
        table["trajectory"] = [redact(json.dumps(list(r.tool_calls or ()), default=str, ensure_ascii=False))
                               for r in result.examples]
    if any(r.score is not None for r in result.examples):  # the primary metric per example (judge, similarity, ...)
        table["score"] = [r.score for r in result.examples]
    if any(r.judgement is not None for r in result.examples):
        table["judge.value"] = [(r.judgement.value if r.judgement else None) or "" for r in result.examples]
        table["judge.reason"] = [r.judgement.reason if r.judgement else "" for r in result.examples]
        table["judge.cost_usd"] = [r.judgement.cost_usd if r.judgement else None for r in result.examples]
    if any(r.similarity is not None for r in result.examples):
        table["similarity"] = [r.similarity for r in result.examples]
    fields = list(dict.fromkeys(name for r in result.examples for name in (r.confidence_by_field or {})))
    if fields:
        table["confidence"] = [r.confidence for r in result.examples]
        if len(fields) > 1:
            for name in fields:
                table[f"confidence.{name}"] = [(r.confidence_by_field or {}).get(name) for r in result.examples]
    return table


def log_comparison(comparison: "Comparison", *, kind: str = "compare", verdict: Optional[dict[str, Any]] = None) -> str:
    """One run in the prompt's experiment: both sides' figures, the statistics, both prompts and the paired table;
    with a gate's `verdict`, its rule and outcome too (tags `promptops.evaluation._gate.*`, `gate.json`).
    A comparison MLflow cannot take is saved as JSON instead (`UnloggedError` names the file)."""
    a, b = comparison.a, comparison.b
    params = redact_mapping({
        "prompt": comparison.prompt, "a": a.reference, "b": b.reference, "a_label": a.label, "b_label": b.label,
        "a_prompt_hash": a.prompt.content_hash, "b_prompt_hash": b.prompt.content_hash,
        "a_git_commit": a.commit or "none", "b_git_commit": b.commit or "none",
        "a_model": comparison.a_result.model, "b_model": comparison.b_result.model,
        "dataset": comparison.dataset, "split": comparison.split, "n": comparison.n, "metric": comparison.metric,
        "resamples": comparison.difference.resamples, "confidence": comparison.difference.confidence, "seed": comparison.seed,
    })
    metrics: dict[str, float] = {}
    for side, result in (("a", comparison.a_result), ("b", comparison.b_result)):
        metrics.update({f"{side}.{_metric_name(key)}": value for key, value in result.metrics.items()})
        metrics.update({f"{side}.score": result.score, f"{side}.latency_p50_s": result.latency_p50_s,
                        f"{side}.latency_p95_s": result.latency_p95_s, f"{side}.input_tokens": result.input_tokens,
                        f"{side}.output_tokens": result.output_tokens, f"{side}.errors": result.errors})
        if result.cost_usd is not None:
            metrics[f"{side}.cost_usd"] = result.cost_usd
    intervals = {"difference": comparison.difference, "exact_match_difference": comparison.exact_match,
                 "latency_difference_s": comparison.latency_per_example_s}
    if comparison.cost_per_example_usd is not None:
        intervals["cost_per_example_difference_usd"] = comparison.cost_per_example_usd
    for delta in comparison.fields:
        intervals[f"f1_difference/{delta.field}"] = delta.difference
    for name, interval in intervals.items():
        metrics.update({name: interval.estimate, f"{name}.low": interval.low, f"{name}.high": interval.high})
    metrics.update({"mcnemar.p_value": comparison.mcnemar.p_value, "mcnemar.mid_p_value": comparison.mcnemar.mid_p_value,
                    "mcnemar.a_only": comparison.mcnemar.a_only, "mcnemar.b_only": comparison.mcnemar.b_only})
    tags = {"promptops.kind": kind}
    dicts = {"comparison.json": comparison.summary()}
    if verdict is not None:
        tags.update({"promptops.gate.passed": str(bool(verdict["passed"])).lower(), "promptops.gate.rule": str(verdict["rule"]),
                     "promptops.gate.tolerance": str(verdict["tolerance"])})
        dicts["gate.json"] = verdict
    texts = {f"a/{a.prompt.name}.yaml": a.prompt.to_yaml(), f"b/{b.prompt.name}.yaml": b.prompt.to_yaml()}
    tables = {"pairs.json": _pairs_table(comparison)}
    try:
        mlflow = _mlflow()
        _experiment(mlflow, comparison.prompt)
        return _log_run(
            mlflow,
            f"{kind} {a.reference} vs {b.reference}",
            tags=tags,
            params=params,
            metrics=metrics,
            texts=texts,
            tables=tables,
            dicts=dicts,
            failure=f"cannot log the comparison to MLflow at {display_uri()}",
        )
    except TrackingError as exc:  # both sides' model calls are paid for
        raise save_unlogged(kind, comparison.prompt, _record(tags, params, metrics, texts, tables, dicts), exc,
                            result=comparison) from None


def _record(tags: dict[str, str], params: dict[str, Any], metrics: dict[str, float], texts: dict[str, str],
            tables: dict[str, dict[str, list[Any]]], dicts: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """What a run would have held in MLflow, as one JSON-ready mapping (for `save_unlogged`)."""
    return {"tags": tags, "params": params, "metrics": metrics,
            "texts": {name: redact_yaml(text) if name.endswith(".yaml") else redact(text) for name, text in texts.items()},
            "tables": tables, **({"dicts": dicts} if dicts else {})}


def _pairs_table(comparison: "Comparison") -> dict[str, list[Any]]:
    """One row per example: inputs, expected, both answers, both right/wrong, both latencies and costs."""
    prompt = comparison.b.prompt
    a_examples, b_examples = comparison.a_result.examples, comparison.b_result.examples
    table: dict[str, list[Any]] = {"source": [e.source for e in b_examples]}
    for spec in prompt.inputs:
        table[spec.name] = [_cell(e.inputs.get(spec.name)) for e in b_examples]
    for spec in prompt.outputs:
        table[f"expected.{spec.name}"] = [_cell(e.expected.get(spec.name)) for e in b_examples]
        table[f"a.{spec.name}"] = [_cell((e.predicted or {}).get(spec.name)) for e in a_examples]
        table[f"b.{spec.name}"] = [_cell((e.predicted or {}).get(spec.name)) for e in b_examples]
    table["a.correct"] = [e.correct for e in a_examples]
    table["b.correct"] = [e.correct for e in b_examples]
    table["a.latency_s"] = [e.latency_s for e in a_examples]
    table["b.latency_s"] = [e.latency_s for e in b_examples]
    table["a.cost_usd"] = [e.cost_usd for e in a_examples]
    table["b.cost_usd"] = [e.cost_usd for e in b_examples]
    return table


def log_audit(name: str, entry: dict[str, Any], root: Optional[Path] = None) -> str:
    """A promotion or rollback as an MLflow run in the prompt's experiment, for the record."""
    mlflow = _mlflow(root)
    _experiment(mlflow, name)
    metrics = {f"{side}.{key}": value for side, values in (entry.get("metrics") or {}).items()
               for key, value in values.items() if isinstance(value, (int, float))}
    return _log_run(
        mlflow,
        f"{entry['action']} {name} {entry['channel']}",
        tags={"promptops.kind": entry["action"], "promptops.channel": entry["channel"]},
        params=redact_mapping({k: v for k, v in entry.items() if not isinstance(v, dict)}),
        metrics=metrics,
        dicts={"audit.json": entry},
        failure=f"cannot write the audit run for {name} to MLflow",
    )


def _log_run(
    mlflow: Any,
    run_name: str,
    *,
    tags: dict[str, str],
    params: dict[str, Any],
    metrics: dict[str, float],
    texts: Optional[dict[str, str]] = None,
    tables: Optional[dict[str, dict[str, list[Any]]]] = None,
    dicts: Optional[dict[str, dict[str, Any]]] = None,
    dataset: Optional[tuple[Any, str]] = None,
    model_id: Optional[str] = None,
    failure: str,
) -> str:
    """One finished run in the current experiment; any MLflow failure becomes one `TrackingError` sentence.
    Every text, table and mapping logged passes the secret scrubber (`promptops._secrets`).

    `dataset` is an MLflow dataset and its context (the split), logged as the run's input.
    """
    try:
        with mlflow.start_run(run_name=run_name) as run:
            mlflow.set_tags(redact_data(tags))
            mlflow.log_params(redact_mapping(params))
            if metrics:
                mlflow.log_metrics(metrics)
                if model_id is not None:  # the same figures on the agent version's LoggedModel (MLflow's Agent versions page)
                    mlflow.log_metrics(metrics, model_id=model_id, dataset=dataset[0] if dataset is not None else None)
            if dataset is not None:
                _log_input(mlflow, dataset[0], dataset[1])
            for artifact_file, text in (texts or {}).items():
                mlflow.log_text(redact_yaml(text) if artifact_file.endswith(".yaml") else redact(text), artifact_file)
            for artifact_file, table in (tables or {}).items():
                mlflow.log_table(data=redact_data(table), artifact_file=artifact_file)
            for artifact_file, data in (dicts or {}).items():
                mlflow.log_dict(redact_data(data), artifact_file)
            return run.info.run_id
    except Exception as exc:
        raise TrackingError(f"{failure}: {_first_line(exc)}") from None


def _log_input(mlflow: Any, dataset: Any, context: str) -> None:
    """The dataset as the current run's input. Two processes logging the same dataset (name and digest) for
    the first time race on MLflow's insert: one gets a unique-constraint error, though the row now exists.
    The loser logs once more, and then links the existing row (seen with two `promote` processes gating
    at once on one sqlite store)."""
    try:
        mlflow.log_input(dataset, context=context)
    except Exception as exc:
        if not _duplicate_row(exc):
            raise
        mlflow.log_input(dataset, context=context)


def load_run(run_id: str, root: Optional[Path] = None) -> Any:
    """The MLflow run, for tests and notebooks that check what was logged."""
    return _mlflow(root).get_run(run_id)


def load_table(run_id: str, artifact_file: str = "predictions.json", root: Optional[Path] = None) -> Any:
    mlflow = _mlflow(root)
    return mlflow.load_table(artifact_file, run_ids=[run_id])


def last_evals(name: str, root: Optional[Path] = None, *, full_split: bool = False) -> dict[str, dict[str, Any]]:
    """The latest eval run of each prompt content hash: hash → {metric, score, cost_usd, split, n, run_id}.

    With `full_split`, only runs that scored their whole split count (n equal to the split's rows,
    not a `--limit` smoke test): the `split_rows` the run logged, or for a run logged before that
    param existed, the rows its data file holds now.
    """
    root = root or find_project_root()
    mlflow = _mlflow(root)
    try:
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            return {}
        runs = mlflow.MlflowClient().search_runs(
            [experiment.experiment_id], "tags.`promptops.kind` = 'eval'", order_by=["attributes.start_time DESC"], max_results=200
        )
    except Exception as exc:
        raise TrackingError(f"cannot read the eval runs of {name!r} from MLflow at {display_uri(root)}: {_first_line(exc)}") from None
    latest: dict[str, dict[str, Any]] = {}
    for run in runs:
        content_hash = run.data.params.get("prompt_hash")
        if not content_hash or content_hash in latest or (full_split and not _scored_whole_split(run.data.params, root)):
            continue
        latest[content_hash] = {
            "metric": run.data.params.get("metric"),
            "score": run.data.metrics.get("score"),
            "cost_usd": run.data.metrics.get("cost_usd"),
            "split": run.data.params.get("split"),
            "n": run.data.params.get("n"),
            "run_id": run.info.run_id,
        }
    return latest


def _scored_whole_split(params: dict[str, str], root: Path) -> bool:
    from promptops.evaluation import split_size

    rows: Any = params.get("split_rows")
    if rows is None and params.get("dataset") and params.get("split"):
        rows = split_size(root / params["dataset"], params["split"])
    return str(rows) == str(params.get("n"))


def _metric_name(key: str) -> str:
    return key.replace(":", "_")


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return path


# --- judge checks ----------------------------------------------------------------------------


def log_judge_check(check: "JudgeCheck", spec: "JudgeSpec", root: Optional[Path] = None) -> str:
    """One run per `promptops judge check`, in the judge's own experiment `judges/NAME` (named like its file).

    A judge file serves several prompts, so its calibration belongs to none of their experiments;
    its experiment collects every check of the judge, so accuracy and kappa can be compared across
    rubric and model changes, and lists the judge (as checked) on its Judges page.
    """
    from promptops.artifact import find_project_root

    root = root or find_project_root()
    data = _relative(check.data, root)
    params = redact_mapping({
        "judge": check.judge, "model": check.model, "scale": spec.scale, "data": data, "n": check.n,
        "kappa_weights": check.kappa_weights or "none", "pass_at": spec.passing_score if spec.scale == "1-5" else "n/a",
        "rubric_sha256": hashlib.sha256(spec.rubric.encode()).hexdigest()[:16],
    })
    metrics = {"accuracy": check.accuracy, "kappa": check.kappa, "n": check.n, "errors": check.errors,
               "judge_calls": check.judge_calls, "judge_cache_hits": check.judge_cache_hits, "wall_time_s": check.wall_time_s}
    if check.judge_cost_usd is not None:
        metrics["judge_cost_usd"] = check.judge_cost_usd
    confusion = {"human": list(check.labels), **{f"judge.{judged}": [check.confusion[human][judged] for human in check.labels]
                                                 for judged in (*check.labels, "error")}}
    disagreements = [row for row in check.rows if row.judge != row.human]
    rows = {"source": [row.source for row in disagreements], "human": [row.human for row in disagreements],
            "judge": [row.judge if row.judge is not None else "error" for row in disagreements],
            "reason": [row.reason for row in disagreements]}
    tags = {"promptops.kind": "judge_check", "promptops.judge": spec.name}
    texts = {f"judge/{spec.name}.yaml": _spec_yaml(spec)}
    tables = {"confusion.json": confusion, "disagreements.json": rows}
    dicts = {"judge_check.json": check.summary()}
    try:
        mlflow = _mlflow(root)
        experiment_id = _experiment(mlflow, JUDGE_CHECK_EXPERIMENT.format(name=spec.name))
        params["judge_version"] = register_judge(spec, experiment_id, with_reference=_rows_have_references(spec, Path(check.data)))
        return _log_run(
            mlflow,
            f"judge check {spec.name}",
            tags=tags,
            params=params,
            metrics=metrics,
            texts=texts,
            tables=tables,
            dicts=dicts,
            failure=f"cannot log the check of judge {spec.name} to MLflow at {display_uri(root)}",
        )
    except TrackingError as exc:  # the judge's calls are paid for
        raise save_unlogged("judge-check", spec.name, _record(tags, params, metrics, texts, tables, dicts), exc, result=check,
                            root=root) from None


def _rows_have_references(spec: "JudgeSpec", data: Path) -> bool:
    """Whether the labelled rows give the judge reference answers (so the registered judge reads `{{ expectations }}`)."""
    from promptops.evaluation import read_labelled_rows

    try:
        return any(row.reference for row in read_labelled_rows(spec, data))
    except (PromptopsError, OSError):  # the check read them a moment ago; a file changed since is no reason to lose the run
        return True


def _spec_yaml(spec: "JudgeSpec") -> str:
    """The judge as checked, every setting spelled out (defaults too), in a judge file's form."""
    import yaml

    return yaml.safe_dump(spec.model_dump(exclude_defaults=False), sort_keys=False, allow_unicode=True, width=100)
