"""`promptops.evaluate` end to end on the embedded model, logged into a temporary MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest

import promptops
from promptops import tracking

pytestmark = pytest.mark.model


def test_banking_eval_logs_params_metrics_and_table(project: Path, mlflow_store: str) -> None:
    result = promptops.evaluate("banking_intent", split="dev", limit=4)
    assert result.n == 4 and result.parse_failures == 0 and result.errors == 0
    assert result.model_calls + result.cache_hits == 4
    assert result.input_tokens > 4 * 100 and result.output_tokens >= 4
    assert result.cost_usd > 0 and 0 < result.latency_p50_s <= result.latency_p95_s
    assert result.metrics["schema_validity"] == 1.0

    run = tracking.load_run(result.run_id, root=project)
    params, metrics = run.data.params, run.data.metrics
    assert params["prompt"] == "banking_intent" and params["model"] == "local/smollm2-135m"
    assert params["split"] == "dev" and params["n"] == "4" and params["max_tokens"] == "32"
    assert run.info.artifact_uri.startswith((Path(mlflow_store.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri())
    assert params["prompt_hash"] == result.prompt_hash
    assert params["dataset"] == "experiments/data/banking_intent/dev.jsonl"
    assert params["git_commit"] == "none"  # the test project is not a git repository
    for name in ("accuracy", "cost_usd", "input_tokens", "output_tokens", "latency_p50_s", "latency_p95_s",
                 "errors", "parse_failures", "model_calls", "cache_hits"):
        assert name in metrics, name
    assert metrics["accuracy"] == pytest.approx(result.metrics["accuracy"])

    table = tracking.load_table(result.run_id, root=project)
    assert len(table) == 4
    assert {"text", "expected.intent", "predicted.intent", "correct", "input_tokens", "latency_s"} <= set(table.columns)
    assert list(table["correct"]) == [ex.correct for ex in result.examples]

    again = promptops.evaluate("banking_intent", split="dev", limit=4)
    assert (again.model_calls, again.cache_hits) == (0, 4)
    assert again.score == result.score and again.cost_usd == pytest.approx(result.cost_usd)


def test_restaurant_eval_reports_per_field_f1(project: Path, mlflow_store: str) -> None:
    result = promptops.evaluate("restaurant_booking", split="dev", limit=3)
    assert result.metric == "f1" and result.parse_failures == 0
    for field in ("people", "date", "time", "first_name", "last_name"):
        assert 0.0 <= result.metrics[f"f1/{field}"] <= 1.0
    metrics = tracking.load_run(result.run_id, root=project).data.metrics
    assert "f1/people" in metrics and "recall/last_name" in metrics


def test_no_cache_calls_the_model_again(project: Path) -> None:
    first = promptops.evaluate("banking_intent", split="test", limit=2, track=False)
    fresh = promptops.evaluate("banking_intent", split="test", limit=2, track=False, cache=False)
    assert fresh.model_calls == 2 and fresh.cache_hits == 0
    assert [e.predicted for e in fresh.examples] == [e.predicted for e in first.examples]  # temperature 0
