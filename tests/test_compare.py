"""`promptops compare`: two versions on the same examples, the statistics (checked against scipy), the MLflow run.

Most tests answer from the scripted model `scripted/literal`, which follows the instruction literally
(the logic is under test, not the model); one runs the embedded model on a few examples.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ALWAYS_EXCHANGE_RATE, FORGET_LAST_NAMES
from scipy import stats as scipy_stats

from promptops.reports.markdown import comparison_markdown
from promptops.evaluation import _stats as stats
from promptops.cli import main
from promptops import compare
from promptops.errors import PromptopsError

def test_a_worse_classifier_with_its_interval_and_mcnemar_test_as_scipy_computes_them(
        git_project, mlflow_store, literal_model, edit_prompt) -> None:
    root = Path(git_project.working_tree_dir)
    edit_prompt("banking_intent", "Read the customer's message", f"{ALWAYS_EXCHANGE_RATE} Read the customer's message")
    comparison = compare("banking_intent@v1", "banking_intent", limit=20, resamples=2000, seed=3)

    expected = [json.loads(line)["intent"] for line in (root / "experiments/data/banking_intent/test.jsonl").read_text().splitlines()[:20]]
    b_right = np.array([intent == "exchange_rate" for intent in expected], dtype=float)
    broken = int((1 - b_right).sum())
    assert (comparison.n, comparison.a_score, comparison.b_score) == (20, 1.0, b_right.mean())
    assert (comparison.mcnemar.a_only, comparison.mcnemar.b_only) == (broken, 0)
    assert comparison.mcnemar.p_value == pytest.approx(scipy_stats.binomtest(broken, broken, 0.5).pvalue)
    reference = scipy_stats.bootstrap(
        (np.ones(20), b_right), lambda x, y, axis: y.mean(axis=axis) - x.mean(axis=axis), paired=True, vectorized=True,
        n_resamples=2000, batch=stats.batch_size(20, 2000), method="percentile", rng=np.random.default_rng(3))
    assert comparison.difference.estimate == pytest.approx(b_right.mean() - 1)
    assert (comparison.difference.low, comparison.difference.high) == pytest.approx(tuple(reference.confidence_interval))
    assert len(comparison.changed) == broken and not any(change.b_correct for change in comparison.changed)
    assert comparison.a.label.startswith("v1 (") and comparison.b.label == "working file"

    from promptops import tracking

    run = tracking.load_run(comparison.run_id)
    assert run.data.tags["promptops.kind"] == "compare"
    assert (run.data.params["a"], run.data.params["b"], run.data.params["n"]) == ("banking_intent@v1", "banking_intent", "20")
    assert run.data.metrics["a.accuracy"] == 1.0 and run.data.metrics["b.accuracy"] == pytest.approx(b_right.mean())
    assert run.data.metrics["difference.low"] == pytest.approx(comparison.difference.low)
    assert run.data.metrics["mcnemar.p_value"] == pytest.approx(comparison.mcnemar.p_value)
    table = tracking.load_table(comparison.run_id, "pairs.json")
    assert list(table["b.intent"]).count("exchange_rate") == 20 and list(table["a.correct"]) == [True] * 20

    text = comparison_markdown(comparison)
    assert f"| **accuracy** (primary) | 1.000 | {b_right.mean():.3f} | **{b_right.mean() - 1:+.3f}** |" in text
    assert f"B fixed 0 that A got wrong and broke {broken} that A got right" in text
    assert f"<details><summary>{broken} examples broken, 0 fixed</summary>" in text


def test_an_extraction_prompt_gets_per_field_f1_deltas(git_project, mlflow_store, literal_model, edit_prompt) -> None:
    edit_prompt("restaurant_booking", "Use null for every detail", f"{FORGET_LAST_NAMES} Use null for every detail")
    comparison = compare("restaurant_booking@v1", "restaurant_booking", limit=30, resamples=1000, track=False)
    fields = {delta.field: delta for delta in comparison.fields}
    assert list(fields) == ["people", "date", "time", "first_name", "last_name"]
    assert fields["last_name"].a_f1 == 1.0 and fields["last_name"].b_f1 == 0.0
    assert fields["last_name"].difference.estimate == -1.0
    assert all(fields[name].difference.estimate == 0 for name in ("people", "date", "time", "first_name"))
    assert comparison.metric == "f1" and comparison.difference.estimate == pytest.approx(comparison.b_score - 1.0, abs=1e-6)
    assert comparison.difference.high < 0 and comparison.run_id is None
    text = comparison_markdown(comparison)
    assert "| F1 `last_name` | 1.000 | 0.000 | -1.000 |" in text
    assert "| exact match (all fields) |" in text


def test_the_same_content_is_evaluated_once(git_project, mlflow_store, literal_model, edit_prompt, monkeypatch) -> None:
    from promptops.evaluation import _run as evaluation

    calls = []
    original = evaluation.evaluate
    monkeypatch.setattr(evaluation, "evaluate", lambda prompt, **options: calls.append(prompt.name) or original(prompt, **options))
    edit_prompt("banking_intent", "name: banking_intent", "# a comment changes no content\nname: banking_intent")
    comparison = compare("banking_intent@v1", "banking_intent", limit=5, track=False)
    assert calls == ["banking_intent"] and comparison.difference.estimate == 0 and comparison.mcnemar.p_value == 1.0


def test_compare_from_the_command_line(git_project, mlflow_store, literal_model, edit_prompt, commit_all) -> None:
    edit_prompt("banking_intent", "Read the customer's message", f"{ALWAYS_EXCHANGE_RATE} Read the customer's message")
    commit_all("Worse")
    result = CliRunner().invoke(main, ["compare", "banking_intent@v1", "banking_intent@v2", "--limit", "8", "--split", "dev"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("## banking_intent: v1 (") and "8 `dev` examples of `experiments/data/banking_intent/dev.jsonl`" in result.stdout
    assert "McNemar's exact test" in result.stdout and "MLflow run `" in result.stdout
    data = json.loads(CliRunner().invoke(main, ["compare", "banking_intent@v1", "banking_intent@v2", "--limit", "8", "--json", "--no-track"]).stdout)
    assert data["a"]["label"].startswith("v1 (") and data["b"]["label"].startswith("v2 (") and data["run_id"] is None
    assert data["difference"]["estimate"] == pytest.approx(data["b_score"] - data["a_score"])


def test_versions_with_different_fields_are_refused(git_project, mlflow_store, literal_model, edit_prompt) -> None:
    edit_prompt("banking_intent", "  - name: intent\n", "  - name: label\n")
    with pytest.raises(PromptopsError, match="only versions with the same inputs and outputs"):
        compare("banking_intent@v1", "banking_intent", limit=2)
    result = CliRunner().invoke(main, ["compare", "banking_intent@v9", "banking_intent"])
    assert result.exit_code == 1 and result.stderr.strip().startswith("Error: prompt 'banking_intent' has no version v9")


@pytest.mark.model
def test_compare_on_the_embedded_model(git_project, mlflow_store, edit_prompt) -> None:
    """Two instructions on the same 3 examples of the real model; the run is in MLflow."""
    edit_prompt("banking_intent", "Read the customer's message", "Read the customer's message carefully")
    result = CliRunner().invoke(main, ["compare", "banking_intent@v1", "banking_intent", "--limit", "3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n"] == 3 and data["model"] == "local/smollm2-135m" and data["a_cost_usd"] > 0
    assert data["difference"]["low"] <= data["difference"]["estimate"] <= data["difference"]["high"]
    from promptops import tracking

    run = tracking.load_run(data["run_id"])
    assert run.data.metrics["b.cost_usd"] == pytest.approx(data["b_cost_usd"]) and run.data.params["split"] == "test"
