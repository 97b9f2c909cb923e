"""`promptops init`: a new project that loads, validates, is committed, ignores what promptops writes, and
evaluates as it is. The scripted model `scripted/literal` answers (`--model`: the layout is under test, not the
model); one test, marked `model`, runs the embedded model on 3 rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import git
import pytest
from click.testing import CliRunner

import promptops
from promptops.cli import main

EXAMPLE = "card_intent"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def no_git_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine where git has no user.name or user.email configured, as on a fresh CI runner."""
    empty = tmp_path / "empty-gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(name, raising=False)


def test_init_makes_a_project_that_loads_validates_is_committed_and_evaluates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_git_identity, literal_model) -> None:
    from promptops.artifact import list_prompts
    from promptops.evaluation import SPLITS, load_dataset
    from promptops.optimizer import load_context

    result = CliRunner().invoke(main, ["init", str(tmp_path / "new")])
    assert result.exit_code == 0, result.output
    assert f"promptops eval {EXAMPLE} --limit 3" in result.stdout and "cd " in result.stdout
    root = tmp_path / "new"
    monkeypatch.chdir(root)

    listed = list_prompts()
    assert [(listing.name, listing.error) for listing in listed] == [(EXAMPLE, None)]
    prompt = listed[0].prompt
    assert prompt.model.id == "local/smollm2-135m" and prompt.eval.gate.rule == "non_inferior" and prompt.eval.gate.tolerance == 0.02
    sizes = {split: len(load_dataset(prompt, None, split)) for split in SPLITS}  # every row checked against the prompt
    assert sizes == {"train": 12, "dev": 12, "test": 12}
    context = load_context(EXAMPLE)
    assert context.base == prompt and [m.id for m in context.experiment.search.models] == ["local/smollm2-135m"]

    repo = git.Repo(root)
    assert len(list(repo.iter_commits())) == 1 and not repo.is_dirty(untracked_files=True), repo.git.status()
    assert repo.head.commit.author.name == "promptops"  # the local fallback: no identity was configured
    assert (root / "experiments" / "data" / EXAMPLE / "LICENSE-CC-BY-4.0.txt").exists()
    assert "BANKING77" in (root / "README.md").read_text() and "CC-BY-4.0" in (root / "README.md").read_text()

    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the project's own store, mlflow.db beside prompts/
    evaluated = CliRunner().invoke(main, ["eval", EXAMPLE, "--limit", "3", "--json", "--model", literal_model.model_id])
    assert evaluated.exit_code == 0, evaluated.output
    summary = json.loads(evaluated.stdout)
    assert (summary["n"], summary["accuracy"]) == (3, 1.0) and summary["run_id"]
    assert (root / "mlflow.db").exists() and (root / "mlartifacts").is_dir()
    assert not repo.is_dirty(untracked_files=True), repo.git.status()  # what the eval wrote is ignored
    assert CliRunner().invoke(main, ["versions", EXAMPLE]).exit_code == 0


def test_the_gitignore_covers_every_file_promptops_writes(tmp_path: Path, no_git_identity) -> None:
    root = promptops.init_project(tmp_path / "new")
    repo = git.Repo(root)
    written = ["mlflow.db", "mlflow.db-journal", "optuna.db", "optuna.db-wal", "mlartifacts/1/a/artifacts/prompt.yaml",
               "mlruns/0/meta.yaml", f"unlogged-runs/eval-{EXAMPLE}-20261208T101500.000000Z.json", ".dspy_cache/cache.db",
               f"prompts/.{EXAMPLE}.yaml.k2j3h4.tmp", ".venv/bin/python",
               "__pycache__/metric.cpython-311.pyc", ".env", "demo/prompts/x.yaml"]
    ignored = repo.git.check_ignore("--no-index", *written).splitlines()
    assert ignored == written
    kept = [f"prompts/{EXAMPLE}.yaml", f"prompts/channels/{EXAMPLE}.yaml", f"experiments/data/{EXAMPLE}/dev.jsonl", "metrics.py"]
    with pytest.raises(git.GitCommandError):  # exit 1: none of them is ignored
        repo.git.check_ignore("--no-index", *kept)


def test_init_refuses_a_folder_that_already_has_prompts(project: Path, assert_one_line_error) -> None:
    assert_one_line_error(CliRunner().invoke(main, ["init"]), "prompts already exists", "promptops init my-prompts")
    assert not (project / "prompts" / f"{EXAMPLE}.yaml").exists()


def test_init_in_a_fresh_clone_keeps_its_readme_and_adds_to_its_gitignore(
        tmp_path: Path, no_git_identity, assert_one_line_error) -> None:
    clone = tmp_path / "clone"
    repo = git.Repo.init(clone)
    (clone / "README.md").write_text("# Our prompts\n")
    (clone / ".gitignore").write_text("node_modules/\n.venv/\n")
    repo.git.add("--all")
    repo.git.commit("-qm", "Initial commit", env={"GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.com",
                                                  "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.com"})
    promptops.init_project(clone)
    assert (clone / "README.md").read_text() == "# Our prompts\n"
    ignore = (clone / ".gitignore").read_text().splitlines()
    assert ignore[:2] == ["node_modules/", ".venv/"] and ignore.count(".venv/") == 1 and "mlflow.db" in ignore
    assert len(list(repo.iter_commits())) == 2 and not repo.is_dirty(untracked_files=True)
    assert_one_line_error(CliRunner().invoke(main, ["init", str(clone)]), "prompts already exists")


def test_the_example_rows_are_the_documented_subset_of_banking77() -> None:
    """For each split: the first 4 rows, in file order, of card_arrival, lost_or_stolen_card and change_pin
    in experiments/data/banking_intent (the rule its README states), unchanged."""
    intents = ("card_arrival", "lost_or_stolen_card", "change_pin")
    scaffold = REPO / "promptops" / "scaffold" / "project" / "experiments" / "data" / EXAMPLE
    assert "the first 4 rows, in file order" in (scaffold / "README.md").read_text()
    for split in ("train", "dev", "test"):
        source = (REPO / "experiments" / "data" / "banking_intent" / f"{split}.jsonl").read_text().splitlines()
        chosen, taken = [], dict.fromkeys(intents, 0)
        for line in source:
            intent = json.loads(line)["intent"]
            if intent in taken and taken[intent] < 4:
                taken[intent] += 1
                chosen.append(line)
        assert (scaffold / f"{split}.jsonl").read_text().splitlines() == chosen


@pytest.mark.model
def test_a_new_project_evaluates_on_the_embedded_model(tmp_path: Path) -> None:
    """The README's first two commands, as a user runs them: `promptops init`, then an eval of 3 rows."""
    subprocess.run([sys.executable, "-m", "promptops", "init", str(tmp_path / "new")], check=True, capture_output=True)
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}  # the project's own mlflow.db
    done = subprocess.run([sys.executable, "-m", "promptops", "eval", EXAMPLE, "--limit", "3", "--json"], cwd=tmp_path / "new",
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["n"] == 3 and summary["model"] == "local/smollm2-135m" and summary["errors"] == 0
    assert summary["schema_validity"] == 1.0  # the grammar keeps every answer among the 3 labels
    status = subprocess.run(["git", "status", "--porcelain"], cwd=tmp_path / "new", capture_output=True, text=True, check=True)
    assert status.stdout == ""
