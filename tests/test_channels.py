"""Channels name commits and only committed state is served or moved: renumbered histories, a promote
killed at every step, hand edits of the channels file, a channel that moves while the gate runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import git_commit

import promptops
from promptops import tracking
from promptops.versioning import channels_file, served_version
from promptops.cli import main
from promptops.errors import PromptopsError
from promptops.versioning import ChannelMovedError, sync
from promptops.versioning import load_prompt_at, read_committed

REPO = Path(__file__).resolve().parent.parent
NAME = "banking_intent"


def prompt_file(repo) -> Path:
    return Path(repo.working_tree_dir) / "prompts" / f"{NAME}.yaml"


def test_a_channel_serves_the_gated_commit_after_a_merge_renumbers_versions_and_after_a_squash(
        git_project, mlflow_store: str, monkeypatch, tmp_path: Path, pass_the_gate, edit_prompt, commit_all) -> None:
    repo = git_project
    pass_the_gate()
    repo.git.branch("-M", "main")
    base = repo.head.commit.hexsha
    edit_prompt(NAME, "temperature: 0.0", "temperature: 0.1")
    gated = commit_all("Warmer", date="2026-11-22T09:00:00+00:00")
    assert promptops.promote(NAME).to_label == "v2"
    gated_prompt = load_prompt_at(prompt_file(repo), gated)

    # A branch that edited the description, dated before the gated commit, is merged: versions renumber.
    repo.git.checkout("-b", "side", base)
    edit_prompt(NAME, "description: ", "description: Reviewed. ")
    commit_all("Reword", date="2026-11-21T09:00:00+00:00")
    repo.git.checkout("main")
    repo.git.merge("--no-ff", "--no-edit", "side", env={"GIT_AUTHOR_DATE": "2026-11-23T09:00:00+00:00",
                                                        "GIT_COMMITTER_DATE": "2026-11-23T09:00:00+00:00"})
    listing = {row["commit"]: row for row in json.loads(CliRunner().invoke(main, ["versions", NAME, "--json"]).stdout)}
    assert listing[gated]["version"] == "v3"  # was v2 when it was gated
    assert [row["channels"] for row in listing.values() if row["channels"]] == ["production"]
    assert listing[gated]["channels"] == "production"

    served = served_version(f"{NAME}@production")
    assert (served.commit, served.label) == (gated, "v3") and served.prompt == gated_prompt
    assert promptops.load(f"{NAME}@production").prompt == gated_prompt
    shown = CliRunner().invoke(main, ["show", f"{NAME}@production"])
    assert shown.exit_code == 0 and "temperature: 0.1" in shown.stdout and "Reviewed." not in shown.stdout
    assert CliRunner().invoke(main, ["diff", f"{NAME}@production", f"{NAME}@v3", "--json"]).stdout.strip() == "[]"

    # Another history, squashed into one commit: the gated commit is on no branch, its content still served.
    repo.git.checkout("--orphan", "squashed")
    git_commit(repo, "Everything, squashed", date="2026-11-24T09:00:00+00:00")
    assert not repo.is_ancestor(gated, "HEAD")
    served = served_version(f"{NAME}@production")
    assert served.commit == gated and served.prompt == gated_prompt
    assert served.label == f"v2 ({gated[:8]}, not on this branch)"
    assert promptops.load(f"{NAME}@production").prompt == gated_prompt

    monkeypatch.chdir(tmp_path)  # no repository: the registry serves the same content
    assert promptops.load(f"{NAME}@production").prompt == gated_prompt


KILLED_PROMOTE = """
import os, sys
os.chdir(sys.argv[1])
from promptops.versioning import _promotion as promotion
from promptops.evaluation import Verdict
verdict = Verdict(True, "non_inferior", 0.02, "accuracy", 1, "candidate", None, 0.5, None, None, None, None, None, None, None, ())
promotion.run_gate = lambda *args, **kwargs: (verdict, {})
promotion.promote("banking_intent", version=sys.argv[2])
print("not killed")
"""
STEPS = ("journal", "committed", "synced", "tagged", "registered", "aliased", "audited")


def test_a_promote_killed_at_each_step_leaves_the_old_or_the_new_version_never_between(
        git_project, mlflow_store: str, pass_the_gate, registry_label, edit_prompt, commit_all) -> None:
    repo = git_project
    pass_the_gate()
    edit_prompt(NAME, "temperature: 0.0", "temperature: 0.1")
    commit_all("Warmer", date="2026-11-21T09:00:00+00:00")
    promptops.promote(NAME, version="v1")
    channels = channels_file(NAME, Path(repo.working_tree_dir))
    commits = {label: served_version(f"{NAME}@{label}").commit for label in ("v1", "v2")}
    current, landed = "v1", {}
    for step in STEPS:
        target = "v2" if current == "v1" else "v1"
        child = subprocess.run([sys.executable, "-c", KILLED_PROMOTE, repo.working_tree_dir, target], capture_output=True, text=True,
                               timeout=180, env={**os.environ, "PROMPTOPS_KILL_AT": step, "PYTHONPATH": str(REPO)})
        assert child.returncode == -signal.SIGKILL, (step, child.stdout, child.stderr[-2000:])

        served = served_version(f"{NAME}@production")  # read from HEAD, before anything is repaired
        assert served.label in (current, target), step
        on_disk = yaml.safe_load(channels.read_text())  # whole, never half-written
        assert on_disk["production"]["commit"] in (commits[current], commits[target]), step
        landed[step] = served.label == target

        sync()  # finishes (or drops) the interrupted move under the lock
        assert sync(repair=False) == [], step
        assert registry_label() == served.label, step
        assert channels.read_text() == read_committed(repo, f"prompts/channels/{NAME}.yaml"), step
        assert not repo.is_dirty(untracked_files=True), step
        assert not (Path(repo.git_dir) / "promptops-move.json").exists(), step
        current = served.label
    assert landed == {"journal": False, "committed": True, "synced": True, "tagged": True, "registered": True,
                      "aliased": True, "audited": True}
    assert promptops.rollback(NAME).to_label in ("v1", "v2")  # the channel is usable afterwards


def test_an_uncommitted_channels_file_is_never_served_and_refused_by_promote_and_rollback(
        git_project, mlflow_store: str, pass_the_gate, registry_label, edit_prompt, commit_all) -> None:
    repo = git_project
    pass_the_gate()
    edit_prompt(NAME, "temperature: 0.0", "temperature: 0.1")
    commit_all("Warmer", date="2026-11-21T09:00:00+00:00")
    promptops.promote(NAME, version="v1")
    v1 = served_version(f"{NAME}@v1").commit
    channels = channels_file(NAME, Path(repo.working_tree_dir))
    state = yaml.safe_load(channels.read_text())
    state["production"]["commit"] = served_version(f"{NAME}@v2").commit  # a hand edit, not committed
    channels.write_text(yaml.safe_dump(state))
    assert served_version(f"{NAME}@production").commit == v1
    for attempt in (lambda: promptops.promote(NAME, version="v2"), lambda: promptops.rollback(NAME, to="v2")):
        with pytest.raises(PromptopsError, match=r"prompts/channels/banking_intent.yaml has uncommitted changes .* "
                                                 r"`git checkout HEAD -- prompts/channels/banking_intent.yaml` and run again"):
            attempt()
    assert served_version(f"{NAME}@production").commit == v1 and registry_label() == "v1"


def test_a_channel_that_moved_while_the_gate_ran_is_not_moved_again(
        git_project, mlflow_store: str, monkeypatch, pass_the_gate, registry_label, edit_prompt, commit_all) -> None:
    from promptops.versioning import _promotion as promotion

    pass_the_gate()
    edit_prompt(NAME, "temperature: 0.0", "temperature: 0.1")
    commit_all("Warmer", date="2026-11-21T09:00:00+00:00")
    edit_prompt(NAME, "temperature: 0.1", "temperature: 0.2")
    commit_all("Warmer still", date="2026-11-22T09:00:00+00:00")
    promptops.promote(NAME, version="v1")
    passing = promotion.run_gate

    def gate_during_which_someone_promotes_v3(*args, **kwargs):
        monkeypatch.setattr(promotion, "run_gate", passing)
        promptops.promote(NAME, version="v3")  # another person, while our evals run
        return passing(*args, **kwargs)

    monkeypatch.setattr(promotion, "run_gate", gate_during_which_someone_promotes_v3)
    with pytest.raises(ChannelMovedError, match="banking_intent production moved to v3 while the gate ran; nothing was changed"):
        promptops.promote(NAME, version="v2")
    assert served_version(f"{NAME}@production").label == "v3" and registry_label() == "v3"


def test_the_gate_refuses_uncommitted_eval_data(git_project, mlflow_store: str) -> None:
    data = Path(git_project.working_tree_dir) / "experiments" / "data" / NAME / "test.jsonl"
    data.write_text(data.read_text() + data.read_text().splitlines(keepends=True)[0])
    result = CliRunner().invoke(main, ["promote", NAME])
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"Error: experiments/data/{NAME}/test.jsonl has uncommitted changes: the gate judges committed "
                                     "data only; commit them (or git stash) and run again")
    assert not channels_file(NAME, Path(git_project.working_tree_dir)).exists() and not tracking.registry_aliases(NAME)


def test_loading_a_channel_needs_neither_the_gate_nor_the_lock(git_project, mlflow_store: str, pass_the_gate) -> None:
    """(fcntl itself is imported by Python's subprocess, which git needs; the lock's module is not.)"""
    pass_the_gate()
    promptops.promote(NAME, version="v1")
    code = ("import sys, promptops; promptops.load('banking_intent@production', guardrails=False); "
            "print(sorted(m for m in ('promptops.versioning._promotion', 'promptops.evaluation._gate') if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=git_project.working_tree_dir,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, check=True).stdout
    assert output.strip() == "[]"
