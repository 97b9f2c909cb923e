"""The `promptops` command: bad input gives one line and a non-zero exit; eval prints JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest



def test_help_lists_commands(run) -> None:
    result = run("--help")
    assert result.exit_code == 0 and "eval" in result.output


def test_help_does_not_import_heavy_libraries() -> None:
    code = "import sys; from promptops.cli import main; print(sorted(m for m in ('dspy', 'mlflow', 'llama_cpp', 'litellm', 'optuna') if m in sys.modules))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_broken_yaml(project: Path, run, assert_one_line_error) -> None:
    path = project / "prompts" / "banking_intent.yaml"
    path.write_text(path.read_text().replace("  - name: text\n", "  - name: text\n   oops: [\n"))
    assert_one_line_error(run("eval", "banking_intent"), "prompts/banking_intent.yaml:7:", "not valid YAML")


def test_missing_field_in_prompt_file(project: Path, run, assert_one_line_error) -> None:
    path = project / "prompts" / "banking_intent.yaml"
    path.write_text(path.read_text().replace("instructions: |", "instruction: |"))
    assert_one_line_error(run("eval", "banking_intent"), "banking_intent.yaml:3:", "instruction")


def test_bad_dataset_row(project: Path, run, assert_one_line_error) -> None:
    dev = project / "experiments" / "data" / "banking_intent" / "dev.jsonl"
    lines = dev.read_text().splitlines()
    lines[6] = json.dumps({"text": "where is my card", "intent": "card_lost"})
    dev.write_text("\n".join(lines) + "\n")
    assert_one_line_error(run("eval", "banking_intent", "--limit", "2"), "dev.jsonl:7:", "field 'intent'")


def test_unknown_model(project: Path, run, assert_one_line_error) -> None:
    assert_one_line_error(run("eval", "banking_intent", "--model", "local/gpt-5"), "unknown local model 'local/gpt-5'")
    assert_one_line_error(run("eval", "banking_intent", "--model", "gpt5"), "unknown model 'gpt5'")


def test_unknown_prompt(project: Path, run, assert_one_line_error) -> None:
    assert_one_line_error(run("eval", "no_such_prompt"), "unknown prompt 'no_such_prompt'", "banking_intent")


def test_unknown_metric(project: Path, run, assert_one_line_error) -> None:
    assert_one_line_error(run("eval", "banking_intent", "--metric", "bleu"), "unknown metric 'bleu'")


def test_unreachable_hosted_model_fails_in_one_sentence(
        project: Path, monkeypatch: pytest.MonkeyPatch, run, assert_one_line_error) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-value-123456")
    path = project / "prompts" / "banking_intent.yaml"
    path.write_text(path.read_text().replace("  id: local/smollm2-135m", "  id: openai/gpt-4o-mini\n  api_base: http://127.0.0.1:9/v1\n  params: {num_retries: 0}"))
    line = assert_one_line_error(run("eval", "banking_intent", "--limit", "2", "--no-track"), "all 2 examples failed")
    assert "sk-test-secret-value-123456" not in line


@pytest.mark.model
def test_eval_json_is_one_object_and_a_rerun_makes_no_model_calls(project: Path, mlflow_store: str, run) -> None:
    first = run("eval", "banking_intent", "--split", "test", "--limit", "3", "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    for key in ("accuracy", "cost_usd", "latency_p50_s", "n", "model_calls", "cache_hits", "run_id"):
        assert key in summary, key
    assert summary["n"] == 3
    second = json.loads(run("eval", "banking_intent", "--split", "test", "--limit", "3", "--json").stdout)
    assert second["model_calls"] == 0 and second["cache_hits"] == 3


@pytest.mark.model
def test_the_disk_cache_serves_a_new_process(project: Path, tmp_path: Path) -> None:
    env = {**os.environ, "DSPY_CACHEDIR": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "promptops", "eval", "restaurant_booking", "--limit", "2", "--json", "--no-track"]
    runs = [json.loads(subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout) for _ in range(2)]
    assert (runs[0]["model_calls"], runs[1]["model_calls"], runs[1]["cache_hits"]) == (2, 0, 2)
    assert runs[0]["f1"] == runs[1]["f1"]


@pytest.mark.model
def test_eval_table_output(project: Path, mlflow_store: str, run) -> None:
    result = run("eval", "restaurant_booking", "--limit", "2")
    assert result.exit_code == 0, result.output
    for words in ("f1/people", "cost", "latency p50 / p95", "MLflow run"):
        assert words in result.stdout
