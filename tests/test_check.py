"""`promptops check` in temporary repositories: which prompts a change touches, what they are compared with,
the exit code and the report. The scripted model `scripted/literal` follows instructions literally; two tests run the
real model."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ALWAYS_EXCHANGE_RATE, FORGET_LAST_NAMES

from promptops.versioning import _check as checking
from promptops.cli import main
from promptops.errors import RepositoryError

WORSE = ("Read the customer's message", f"{ALWAYS_EXCHANGE_RATE} Read the customer's message")


@pytest.fixture()
def repo(git_project, mlflow_store, commit_all, monkeypatch):
    """The example project on `main`, with its experiment file, outside any pull-request build."""
    monkeypatch.delenv("GITHUB_BASE_REF", raising=False)
    root = Path(git_project.working_tree_dir)
    (root / "experiments" / "banking_intent.yaml").write_text(
        (Path(__file__).resolve().parent.parent / "experiments" / "banking_intent.yaml").read_text())
    commit_all("Experiment")
    git_project.git.branch("-M", "main")
    return git_project


def run_check(*args: str):
    return CliRunner().invoke(main, ["check", "--limit", "12", *args])


def test_what_a_change_touches(repo, edit_prompt, commit_all) -> None:
    root = Path(repo.working_tree_dir)
    base_name, base = checking.resolve_base(repo)
    assert (base_name, base) == ("main", repo.head.commit.hexsha)  # on main itself: HEAD, the check covers uncommitted work
    assert checking.touched_prompts(checking.changed_paths(repo, base), root) == ({}, [])

    repo.git.checkout("-b", "feature")
    with (root / "experiments/data/restaurant_booking/dev.jsonl").open("a") as handle:
        handle.write(json.dumps({"text": "Table for 2", "asked_for": "", "people": "2", "date": None, "time": None,
                                 "first_name": None, "last_name": None}) + "\n")
    commit_all("One more dev row")
    edit_prompt("banking_intent", "temperature: 0.0", "temperature: 0.1")  # uncommitted: counted too
    (root / "prompts" / "new_router.yaml").write_text((root / "prompts" / "banking_intent.yaml").read_text().replace(
        "name: banking_intent", "name: new_router"))  # untracked: counted too
    assert checking.resolve_base(repo) == ("main", base)
    touched, removed = checking.touched_prompts(checking.changed_paths(repo, base), root)
    assert touched == {"banking_intent": ["prompts/banking_intent.yaml"], "new_router": ["prompts/new_router.yaml"],
                       "restaurant_booking": ["experiments/data/restaurant_booking/dev.jsonl"]}
    assert removed == []

    repo.git.checkout("--", "prompts/banking_intent.yaml")
    (root / "prompts" / "new_router.yaml").unlink()
    exp = root / "experiments" / "banking_intent.yaml"
    exp.write_text(exp.read_text().replace("n_trials: 20", "n_trials: 30"))
    (root / "prompts" / "restaurant_booking.yaml").unlink()
    touched, removed = checking.touched_prompts(checking.changed_paths(repo, base), root)
    assert touched == {"banking_intent": ["experiments/banking_intent.yaml"]} and removed == ["restaurant_booking"]


def test_the_base_is_where_the_branch_left_main(repo, monkeypatch, edit_prompt, commit_all) -> None:
    start = repo.head.commit.hexsha
    repo.git.checkout("-b", "feature")
    edit_prompt("banking_intent", "temperature: 0.0", "temperature: 0.1")
    commit_all("Warmer")
    repo.git.checkout("main")
    (Path(repo.working_tree_dir) / "notes.txt").write_text("main moves on\n")
    main_tip = commit_all("Notes")
    repo.git.checkout("feature")
    assert checking.resolve_base(repo) == ("main", start)  # not main's tip: its later commits are not this branch's changes
    assert checking.resolve_base(repo, "HEAD~1") == ("HEAD~1", start)
    monkeypatch.setenv("GITHUB_BASE_REF", "main")  # a pull-request build; no origin/main in this clone, so main
    assert checking.resolve_base(repo) == ("main", start)
    repo.git.branch("-m", "main", "trunk")
    assert checking.resolve_base(repo)[0] == "HEAD"
    assert checking.resolve_base(repo, "trunk") == ("trunk", start) != main_tip
    with pytest.raises(RepositoryError, match="--base 'nope' is not a commit, tag or branch"):
        checking.resolve_base(repo, "nope")


def test_a_worse_instruction_fails_and_the_report_names_the_regression(repo, literal_model, tmp_path, edit_prompt) -> None:
    edit_prompt("banking_intent", *WORSE)
    report_file = tmp_path / "report.md"
    result = run_check("--report", str(report_file))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (result.output, result.exception)
    report = report_file.read_text()
    assert report == result.stdout
    assert report.startswith("## promptops check: ❌ 1 of 1 changed prompt failed\n")
    assert "Changes since `main`" in report
    assert "| `banking_intent` | accuracy | 1.000 (v1 at base) |" in report and "| ❌ fail |" in report
    assert "Gate: accuracy 0.083 vs 1.000 (v1 at base): -0.917 (95% CI -1.000 to -0.750), McNemar p < 0.001, n = 12;" in report
    assert "rule non_inferior (tolerance 0.02) fails" in report
    assert "- **the interval's lower bound -" in report and "is below -0.02: these 12 examples do not show it is not worse; at a difference of -0.917 no number of examples would**" in report
    assert "Changed: `prompts/banking_intent.yaml`." in report
    assert "Reproduce: `promptops compare banking_intent@" in report

    loose = run_check("--tolerance", "1", "--no-track")
    assert loose.exit_code == 0 and "✅ the changed prompt passes" in loose.stdout


def test_an_unchanged_or_better_prompt_passes(repo, literal_model, edit_prompt, commit_all) -> None:
    assert run_check().exit_code == 0 and "## promptops check: ✅ no prompt changed" in run_check().stdout

    edit_prompt("banking_intent", "name: banking_intent", "# reviewed by Ada\nname: banking_intent")
    same = run_check()
    assert same.exit_code == 0, same.output
    assert "| `banking_intent` | accuracy | 1.000 (v1 at base) | 1.000 | **+0.000** (+0.000 to +0.000) | 1 |" in same.stdout

    edit_prompt("banking_intent", *WORSE)
    commit_all("Worse")  # on main: now v2, which production will serve
    from promptops.versioning import _promotion as promotion

    promotion.promote("banking_intent", version="v2", limit=2, force=True, reason="test set-up")
    edit_prompt("banking_intent", ALWAYS_EXCHANGE_RATE + " ", "")  # the fix
    better = run_check()
    assert better.exit_code == 0, better.output
    assert "(production v2) |" in better.stdout and "✅ pass" in better.stdout
    assert "B fixed" not in better.stdout and "after fixed" in better.stdout


def test_a_threshold_in_the_prompt_file_and_a_new_prompt(repo, literal_model, edit_prompt, commit_all) -> None:
    root = Path(repo.working_tree_dir)
    path = edit_prompt("restaurant_booking", "  metric: f1\n", "  metric: f1\n  threshold: 0.95\n")
    edit_prompt("restaurant_booking", "Use null for every detail", f"{FORGET_LAST_NAMES} Use null for every detail")
    new = root / "prompts" / "card_router.yaml"
    new.write_text((root / "prompts" / "banking_intent.yaml").read_text().replace("name: banking_intent", "name: card_router")
                   .replace("metric: accuracy", "metric: accuracy\n  threshold: 0.5"))
    shutil.copytree(root / "experiments/data/banking_intent", root / "experiments/data/card_router")
    new.write_text(new.read_text().replace("data/banking_intent", "data/card_router"))
    repo.git.checkout("-b", "feature")
    commit_all("A new prompt, a threshold")  # the gate judges committed data only
    result = run_check("--tolerance", "0.5")
    assert result.exit_code == 1, result.output
    assert "❌ 1 of 2 changed prompts failed" in result.stdout, result.stdout
    assert f"is below the threshold 0.95 set in {path.relative_to(root)}" in result.stdout
    assert "| `card_router` | accuracy | new | 1.000 |" in result.stdout and "New prompt: nothing to compare with" in result.stdout


def test_a_prompt_whose_outputs_changed_is_held_to_its_threshold_only(repo, literal_model, edit_prompt, commit_all) -> None:
    root = Path(repo.working_tree_dir)
    for name in ("test", "train", "dev"):
        data = root / f"experiments/data/banking_intent/{name}.jsonl"
        data.write_text(data.read_text().replace('"intent":', '"label":'))
    edit_prompt("banking_intent", "  - name: intent\n", "  - name: label\n")
    repo.git.checkout("-b", "feature")
    commit_all("Rename the output field")  # the gate judges committed data only
    result = run_check()
    assert result.exit_code == 0, result.output
    assert "| `banking_intent` | accuracy | not compared | 1.000 |" in result.stdout
    assert "Not compared with v1 at base, which cannot answer the same examples" in result.stdout


def test_a_broken_prompt_file_fails_the_check_with_its_error(repo, literal_model, edit_prompt) -> None:
    edit_prompt("banking_intent", "instructions: |", "instruction: |")
    result = run_check()
    assert result.exit_code == 1 and "| `banking_intent` | | | | | | | | ❌ error |" in result.stdout
    assert "- **prompts/banking_intent.yaml:3:" in result.stdout


def test_content_hash_is_unchanged_by_an_unset_threshold(project) -> None:
    from promptops.artifact import load_prompt_file

    prompt = load_prompt_file(project / "prompts" / "banking_intent.yaml")
    data = prompt.model_dump(mode="json")
    assert data["eval"].pop("threshold") is None
    with_threshold = prompt.with_changes(eval={**prompt.eval.model_dump(), "threshold": 0.5})
    assert with_threshold.content_hash != prompt.content_hash
    assert "threshold" not in prompt.to_yaml() and "threshold: 0.5" in with_threshold.to_yaml()


# Test rows the embedded model gets right with the prompt as committed (SmolLM2-135M scores 0.125 on
# the whole test split: uncalibrated, it answers change_pin to nearly every message) and wrong when
# told the labels mean something else.
GATE_ROWS = (4, 35, 36, 37)
SWAPPED_LABELS = ("The labels mean the opposite of their names: exchange_rate is for cards that have not arrived, card_arrival "
                  "is for exchange rates, change_pin is for closing the account, terminate_account is for PIN changes. "
                  "Answer with the label by these meanings.")


@pytest.mark.model
def test_on_the_embedded_model_a_worse_instruction_exits_1_and_an_unchanged_one_0(
        repo, tmp_path, edit_prompt, commit_all) -> None:
    """The acceptance case from the command line, on 4 test rows of the real model (8 model calls)."""
    root = Path(repo.working_tree_dir)
    test_rows = root / "experiments/data/banking_intent/test.jsonl"
    lines = test_rows.read_text().splitlines()
    test_rows.write_text("".join(lines[row - 1] + "\n" for row in GATE_ROWS))
    # GATE_ROWS are rows the uncalibrated model answers right (label choices are calibrated by default since issue 26)
    edit_prompt("banking_intent", "  max_tokens: 32\n", "  max_tokens: 32\n  params: {calibrate: false}\n")
    commit_all("Gate on rows the model answers")

    edit_prompt("banking_intent", "name: banking_intent", "# reviewed\nname: banking_intent")
    unchanged = CliRunner().invoke(main, ["check"])
    assert unchanged.exit_code == 0, unchanged.output
    assert "✅ the changed prompt passes" in unchanged.stdout and "| 1.000 (v2 at base) | 1.000 |" in unchanged.stdout, unchanged.stdout

    edit_prompt("banking_intent", "Read the customer's message and answer", f"{SWAPPED_LABELS} Read the customer's message and answer")
    worse = CliRunner().invoke(main, ["check", "--report", str(tmp_path / "report.md")])
    assert worse.exit_code == 1, worse.output
    assert "vs 1.000 (v2 at base)" in worse.stdout and "rule non_inferior (tolerance 0.02) fails" in worse.stdout
    assert "❌ fail" in worse.stdout
    assert (tmp_path / "report.md").read_text() == worse.stdout
    print(worse.stdout)


def test_the_example_workflow_runs_check_and_posts_its_report(repo_root: Path) -> None:
    import yaml

    workflow = yaml.safe_load((repo_root / "examples" / "ci" / "promptops-check.yml").read_text())
    steps = {step.get("name"): step for step in workflow["jobs"]["check"]["steps"]}
    run = steps["Evaluate the changed prompts against production"]["run"]
    command = re.sub(r"\$\{\{.*?\}\}", "main", run).split()  # GitHub's expressions, filled in
    assert command[:2] == ["promptops", "check"] and "--report" in command and "local/smollm2-135m" in command
    main.get_command(None, "check").make_context("check", command[2:])  # every option it passes exists
    assert "--body-file promptops-report.md" in steps["Comment on the pull request"]["run"]
