"""The listings (`prompts`, `models`, `versions`, `status`, `traces`, `doctor`): readable at 80 columns with
every id whole, a `--json` that parses, and one broken prompt file listed as an error instead of hiding the
others. The scripted model `scripted/literal` answers (the listings are under test, not the model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import promptops
from promptops.versioning import assign_channel

NAME = "banking_intent"
LONG_MESSAGE = ("Say exactly one label: on long messages the router answered with two labels joined by a comma, "
                "which every metric counts as wrong")
BROKEN = "name: broken\ninstructions: Say hi.\n  inputs: [\n"


@pytest.fixture()
def lived_in(git_project, mlflow_store, literal_model, edit_prompt, commit_all, log_traces):
    """Production v1 (through the gate), a candidate v2 with a long message, a full eval and a smoke test of v2, traces."""
    promptops.promote(NAME)
    edit_prompt(NAME, "Read the customer's message", "Read the customer's message and say exactly one label")
    commit_all(LONG_MESSAGE)
    assign_channel(NAME, "v2", "candidate", action="optimize", metrics={}, reason="a test")
    promptops.evaluate(NAME, split="dev")  # all 64 rows
    promptops.evaluate(NAME, split="dev", limit=3)  # a smoke test, later: not what status shows
    trace_ids = log_traces(NAME)
    return git_project, trace_ids


def lines_of(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def assert_fits(lines: list[str], *values: str) -> None:
    """No line wider than 80 columns, nothing cut, and each value whole on one line."""
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    assert not any("…" in line for line in lines), "\n".join(lines)
    for value in values:
        assert any(value in line for line in lines), (value, "\n".join(lines))


def test_every_listing_fits_80_columns_with_ids_whole(lived_in, run) -> None:
    repo, trace_ids = lived_in
    commits = [commit.hexsha[:8] for commit in repo.iter_commits(paths=f"prompts/{NAME}.yaml")]

    assert_fits(lines_of(run("versions", NAME)), "v1", "v2", *commits, "production", "candidate", "accuracy 1.000")
    assert_fits(lines_of(run("status")), NAME, "restaurant_booking", "production v1", "candidate v2", "no production")
    assert_fits(lines_of(run("models")), "local/smollm2-135m", "local/gemma3-270m")
    assert_fits(lines_of(run("prompts")), NAME, "restaurant_booking", "local/smollm2-135m")
    traces = lines_of(run("traces", NAME))
    assert_fits(traces, *trace_ids, "local/smollm2-135m")
    assert len(traces) <= 1 + 5 * len(trace_ids)  # a few lines per trace, not twenty

    wide = lines_of(run("versions", NAME, columns=160))
    assert "author" in wide[1] and "Ada Lovelace" in "\n".join(wide)  # room for the author again


def test_every_listing_has_json(lived_in, monkeypatch: pytest.MonkeyPatch, run) -> None:
    from promptops.models import ModelHealth

    _, trace_ids = lived_in
    versions = json.loads(run("versions", NAME, "--json").stdout)
    assert [(v["version"], v["channels"]) for v in versions] == [("v1", "production"), ("v2", "candidate")]
    assert versions[1]["message"] == LONG_MESSAGE
    status = {row["prompt"]: row for row in json.loads(run("status", "--json").stdout)["prompts"]}
    assert status[NAME]["channels"] == {"production": "v1", "candidate": "v2"} and status[NAME]["error"] is None
    models = json.loads(run("models", "--json").stdout)
    assert [m["model"] for m in models] == ["local/smollm2-135m", "local/gemma3-270m"]
    assert models[0]["weights"].endswith(".gguf") and models[0]["input_usd_per_million"] == 0.0135
    prompts = json.loads(run("prompts", "--json").stdout)
    # the file's model: the scripted one this project's banking_intent answers from (the example file says local/smollm2-135m)
    assert [(p["name"], p["model"], p["outputs"], p["error"]) for p in prompts][1] == (NAME, "scripted/literal", ["intent"], None)
    assert sorted(t["trace_id"] for t in json.loads(run("traces", NAME, "--json").stdout)) == sorted(trace_ids)
    monkeypatch.setattr(promptops, "doctor", lambda models, timeout_s: [ModelHealth("local/smollm2-135m", "ok", seconds_per_call=0.5)])
    assert json.loads(run("doctor", "--json").stdout)[0]["status"] == "ok"


def test_status_shows_the_last_eval_of_the_whole_split_and_no_production(lived_in, run) -> None:
    rows = {row.prompt: row for row in promptops.versioning._promotion.status()}
    last = rows[NAME].last_eval
    assert (last["split"], last["n"], last["score"]) == ("dev", "64", 1.0)  # not the 3-row smoke test run after it
    assert rows[NAME].working_file_changed is True
    assert rows["restaurant_booking"].working_file_changed is None and rows["restaurant_booking"].last_eval is None
    text = run("status", columns=120).stdout
    booking = next(line for line in text.splitlines() if line.startswith("restaurant_booking"))
    assert "no production" in booking and "yes" not in booking
    assert "accuracy 1.000 (dev, n=64)" in text


def test_a_run_logged_before_split_rows_is_judged_by_its_data_file(project: Path) -> None:
    from promptops.tracking._runs import _scored_whole_split

    params = {"dataset": f"experiments/data/{NAME}/test.jsonl", "split": "test", "n": "40"}
    assert _scored_whole_split(params, project)
    assert not _scored_whole_split({**params, "n": "3"}, project)
    assert not _scored_whole_split({**params, "dataset": "experiments/data/gone.jsonl"}, project)


def test_one_broken_prompt_file_is_an_error_row_and_the_others_are_listed(git_project, mlflow_store, run) -> None:
    (Path(git_project.working_tree_dir) / "prompts" / "broken.yaml").write_text(BROKEN)
    for command in (("prompts",), ("status",)):
        result = run(*command)
        assert result.exit_code == 1, result.output
        lines = result.stdout.splitlines()
        assert_fits(lines, NAME, "restaurant_booking")
        errors = [line for line in lines if line.startswith("error broken:")]
        assert len(errors) == 1 and "prompts/broken.yaml:3:" in errors[0], result.stdout
        listed = json.loads(run(*command, "--json").stdout)
        rows = listed["prompts"] if command == ("status",) else listed
        names = [row.get("name") or row.get("prompt") for row in rows]
        assert names == ["banking_agent", "banking_intent", "banking_summary", "broken", "restaurant_booking"]
        [broken] = [row for row in rows if row["error"]]
        assert broken["error"].startswith("prompts/broken.yaml:3: not valid YAML")


def test_eval_rows_lists_every_row_or_the_wrong_ones_at_80_columns_and_in_json(
        git_project, mlflow_store, literal_model, edit_prompt, run) -> None:
    """Issue 26: eval showed the 5 least confident rows and --json had no per-row data."""
    from conftest import MISREAD

    edit_prompt(NAME, "Read the customer's message", f"{MISREAD} Read the customer's message")
    every = lines_of(run("eval", NAME, "--split", "test", "--limit", "6", "--no-track", "--rows"))
    assert_fits(every, "6 rows of 6", "test.jsonl:1", "test.jsonl:6")
    assert sum("✗" in line for line in every) == 1 and sum("✓" in line for line in every) == 5
    wrong = lines_of(run("eval", NAME, "--split", "test", "--limit", "6", "--no-track", "--rows", "wrong"))
    assert_fits(wrong, "1 wrong row of 6", "test.jsonl:1")
    assert not any("test.jsonl:2" in line for line in wrong)
    data = json.loads(run("eval", NAME, "--split", "test", "--limit", "6", "--no-track", "--rows", "wrong", "--json").stdout)
    [row] = data["rows"]
    assert row["row"].endswith("test.jsonl:1") and row["correct"] is False and row["expected"] != row["predicted"]
    assert set(row) >= {"inputs", "expected", "predicted", "correct", "confidence", "held"}
    assert "rows" not in json.loads(run("eval", NAME, "--split", "test", "--limit", "2", "--no-track", "--json").stdout)
