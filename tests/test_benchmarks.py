"""Every script in benchmarks/ in its smoke mode: `python benchmarks/X.py --smoke --out FILE`, as a subprocess from
the repository root, on the same code path as the full benchmark (the promptops APIs it calls, the JSON it writes),
on a few rows, one round and the smallest settings. A rename in promptops or a figure the script stops writing fails
here, not months later in a benchmark run nobody repeated.

The scripts' own scratch folders go under the test's temporary folder (TMPDIR); the embedded model runs on
PROMPTOPS_LLAMA_THREADS threads, 1 unless set. scale.py needs the local PostgreSQL (`make test` starts it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SMOKE_TIMEOUT_S = 240  # each takes 5 to 25 s on 2 cores; a hang must not hold the suite


def smoke(repo_root: Path, tmp_path: Path, script: str) -> dict[str, Any]:
    """Run benchmarks/SCRIPT.py --smoke; its exit code must be 0; returns the JSON it wrote."""
    out = tmp_path / f"{script}-smoke.json"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    env.setdefault("PROMPTOPS_LLAMA_THREADS", "1")
    completed = subprocess.run([sys.executable, str(Path("benchmarks") / f"{script}.py"), "--smoke", "--out", str(out)],
                               cwd=repo_root, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=SMOKE_TIMEOUT_S)
    assert completed.returncode == 0, f"{script}.py --smoke exited with {completed.returncode}:\n{completed.stderr[-4000:]}"
    figures = json.loads(out.read_text())
    assert figures["smoke"] is True
    return figures


def test_smoke_refuses_to_write_over_the_committed_results(repo_root: Path) -> None:
    committed = repo_root / "benchmarks" / "faults-results.json"
    before = committed.read_bytes()
    completed = subprocess.run([sys.executable, "benchmarks/faults.py", "--smoke", "--out", str(committed)], cwd=repo_root,
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2 and "outside benchmarks/" in completed.stderr
    assert committed.read_bytes() == before


@pytest.mark.model
def test_agent(repo_root: Path, tmp_path: Path) -> None:
    figures = smoke(repo_root, tmp_path, "agent")
    assert figures["tasks"] == 1 and figures["model"].startswith("local/smollm2-135m")
    assert figures["model_calls"] >= 2  # at least one step and the output call
    assert figures["metrics"]["model_calls_per_task"] == figures["model_calls"]
    assert figures["engine"]["requests"] == figures["model_calls"]
    engine = figures["engine"]
    assert figures["input_tokens"] == engine["prompt_tokens"] > engine["prompt_tokens_reused"] > 0  # later calls reuse the kept prefix
    assert figures["new_prompt_tokens_per_task"] > 0 and figures["seconds_per_task"] > 0
    assert 0.0 <= figures["metrics"]["task_success"] <= 1.0 and figures["metrics"]["unsafe_actions"] == 0.0
    assert figures["llama_cpp"]["prompt_tokens_per_s"] > 0 and figures["llama_cpp"]["ms_per_step_at_128"] > 0


@pytest.mark.model
def test_engine(repo_root: Path, tmp_path: Path) -> None:
    figures = smoke(repo_root, tmp_path, "engine")
    rows = figures["rows"]
    assert [row["mode"] for row in rows] == ["grammar", "guided-sampled", "guided", "guided+calibrate"]
    for row in rows:
        assert row["model"] == "local/smollm2-135m" and row["prompt"] == "banking_intent" and row["n"] == 2
        assert row["examples_per_second"] > 0 and row["forward_passes_per_example"] >= 1
        assert 0 < row["new_prompt_tokens_per_example"] <= row["prompt_tokens_per_example"]
        assert 0.0 <= row["accuracy"] <= 1.0
    assert all(0.0 <= row["agrees_with_grammar"] <= 1.0 for row in rows[1:])
    assert rows[2]["sampled_tokens_per_example"] == 0  # guided picks labels by likelihood: nothing sampled
    assert [(row["kept_states"], row["n"]) for row in figures["interleaved"]] == [(True, 2), (False, 2)]
    assert all(row["seconds_per_example"] > 0 for row in figures["interleaved"])


def test_faults(repo_root: Path, tmp_path: Path) -> None:
    figures = smoke(repo_root, tmp_path, "faults")
    assert figures["requests"] == 40 and figures["outage_at"] == 15
    assert figures["unhandled_exceptions"] == 0 and sum(figures["outcomes"].values()) == 40
    assert figures["outcomes"]["answered"] > 0 and figures["outcomes"].get("CircuitOpen", 0) > 0
    assert figures["breaker_trips"] >= figures["breaker_trips_expected_at_least"] == 2
    assert figures["server_calls"] == sum(figures["server_faults"].values()) > 0
    assert figures["server_faults"]["server_error"] >= 12  # the outage
    assert figures["within_cap_plus_one_call"] and figures["spent_usd_promptops"] > 0
    assert figures["spent_usd_promptops"] == pytest.approx(figures["billed_usd_by_server"], abs=1e-8)
    assert figures["traces"] >= 40 and 0 < figures["latency_p50_s"] <= figures["latency_p95_s"]


@pytest.mark.model
def test_llama_builds(repo_root: Path, tmp_path: Path) -> None:
    figures = smoke(repo_root, tmp_path, "llama_builds")
    assert figures["n"] == 2 and figures["rounds"] == 1 and list(figures["builds"]) == ["current"]
    assert len(figures["round_totals_s"]["current"]) == 1 and figures["round_totals_s"]["current"][0] > 0
    build = figures["builds"]["current"]
    assert build["llama_cpp_version"] and build["cpu_features"]
    assert build["seconds_per_call_median"] > 0 and build["load_s_median"] > 0
    assert build["input_tokens_per_call"] > 100 and build["output_tokens_per_call"] > 0  # the rendered eval prompt, answered
    assert build["total_ratio_vs_current"] == 1.0 and build["same_answers_as_current"] == "2/2"


@pytest.mark.model
def test_optimizer(repo_root: Path, tmp_path: Path) -> None:
    figures = smoke(repo_root, tmp_path, "optimizer")
    ours, mipro = figures["promptops"], figures["mipro_light"]
    assert figures["experiment"] == "banking_intent"
    assert ours["trials"] == 2 and set(ours["trial_states"]) <= {"COMPLETE", "PRUNED"} and ours["stopped_by"] is None
    assert ours["model_calls"] > 0 and ours["spent_usd"] > 0 and ours["wall_time_s"] > 0
    assert ours["front"] and ours["winner"] and 0.0 <= ours["test_score"] <= 1.0 and ours["baseline_test_score"] is not None
    assert mipro["error"] is None  # MIPROv2 compiled and its program was read back (an exception here is caught into "error")
    assert mipro["model_calls"] > 0 and 0.0 <= mipro["test_score"] <= 1.0
    assert set(figures["ratios_promptops_over_mipro"]) == {"test_score", "model_calls", "wall_time_s"}
    assert figures["ratios_promptops_over_mipro"]["model_calls"] > 0


@pytest.mark.model
def test_overhead(repo_root: Path, tmp_path: Path) -> None:
    figures = smoke(repo_root, tmp_path, "overhead")
    assert figures["n"] == 2 and figures["rounds"] == 1
    assert figures["plain_llama_cpp_wall_s"] > 0 and figures["promptops_cold_model_s"] > 0
    assert figures["promptops_cold_wall_s"] >= figures["promptops_cold_model_s"]
    assert 0 < figures["promptops_warm_wall_s"] < figures["promptops_cold_wall_s"]  # warm: every answer from the cache
    assert figures["cold_ratio_in_run"] >= 1.0 and figures["warm_ratio_wall"] > 0


def test_scale(repo_root: Path, tmp_path: Path) -> None:
    figures = smoke(repo_root, tmp_path, "scale")
    assert figures["checks_failed"] == [] and figures["search"]["n_trials"] == 2
    assert [(run["label"], run["workers"]) for run in figures["runs"]] == [("1 worker", 1), ("2 workers", 2)]
    for run in figures["runs"]:
        assert run["exit_code"] == 0 and run["problems"] == [] and run["worker_failures"] == []
        assert run["trials"]["total"] == 2 and run["trials"]["COMPLETE"] + run["trials"]["PRUNED"] == 2
        assert run["duplicates"] == 0 and run["lost"] == 0 and len(run["timeline"]) == 2
        assert run["model_calls_counted"] == run["server_requests"] > 0
        assert run["spent_usd"] == pytest.approx(run["billed_usd_by_server"], abs=1e-6) and run["spent_usd"] > 0
        assert run["wall_s"] > 0 and run["speed_up"] > 0 and 1 <= len(run["workers_seen"]) <= run["workers"]


def test_secret_detection(repo_root: Path, tmp_path: Path) -> None:
    figures = smoke(repo_root, tmp_path, "secret_detection")  # exits 1 when the detector misses its targets
    corpus = figures["corpus"]
    assert corpus["secrets"] >= 40 and corpus["kinds"] >= 15 and corpus["lookalikes"] >= 40
    assert corpus["recall"] >= figures["targets"]["recall_at_least"] == 0.95
    assert corpus["false_positive_rate"] <= figures["targets"]["false_positive_rate_at_most"] == 0.05
    assert corpus["missed_examples"] == [] or corpus["recall"] < 1.0
    assert figures["hand_list"]["recall"] < corpus["recall"]  # the baseline it replaced, scored the same way
    assert figures["rules"]["gitleaks"] > 200
    for scrubber in ("redact", "hand_list", "hand_list_expressions_only"):
        assert set(figures["speed"][scrubber]) == {"readme_prose_us_per_kb", "eval_rows_jsonl_us_per_kb",
                                                   "trace_spans_json_us_per_kb", "us_per_short_value"}
        assert all(value > 0 for value in figures["speed"][scrubber].values())
    assert figures["repository_masks"]["files"] > 0


@pytest.mark.model
def test_serving(repo_root: Path, tmp_path: Path) -> None:
    figures = smoke(repo_root, tmp_path, "serving")
    assert figures["n"] == 2 and figures["rounds"] == 1 and figures["model"] == "local/smollm2-135m"
    assert figures["git_processes_during_requests"] == 0  # the ref is resolved once, at load
    for kind in ("bare", "guarded", "traced"):
        assert figures[f"{kind}_request_median_ms"] >= figures[f"{kind}_model_median_ms"] > 0
        assert figures[f"{kind}_outside_model_median_ms"] > 0
    assert figures["bare_overhead_vs_bare_ms"] == 0.0


@pytest.mark.model
def test_similarity(repo_root: Path, tmp_path: Path) -> None:
    figures = smoke(repo_root, tmp_path, "similarity")
    assert figures["pairs"] == {"same_intent": 20, "different_intent": 20, "seed": 0}
    assert figures["data"].startswith("banking_intent dev+test: 24 BANKING77 messages")
    candidates = figures["candidates"]
    assert set(candidates) == {"local/minilm-l6-v2", "smollm2-135m-mean", "word-overlap"}
    for name, entry in candidates.items():
        assert "error" not in entry, f"{name}: {entry.get('error')}"
        assert 0.0 <= entry["roc_auc_95"][0] <= entry["roc_auc"] <= entry["roc_auc_95"][1] <= 1.0
    assert candidates["local/minilm-l6-v2"]["dimensions"] == 384 and candidates["smollm2-135m-mean"]["dimensions"] == 576
    assert candidates["local/minilm-l6-v2"]["roc_auc"] > 0.9  # the shipped embedder tells same-intent pairs apart
    for name in ("local/minilm-l6-v2", "smollm2-135m-mean"):
        timing = candidates[name]["one_thread"]
        assert timing["threads"] == 1 and timing["texts_per_s"] > 0 and timing["peak_rss_mb"] > timing["rss_before_load_mb"] > 0
        assert "default_threads" not in candidates[name]  # smoke: one thread only
