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


def production_v1_and_a_v2(edit_prompt, commit_all) -> None:
    """v2 (a warmer temperature) committed on top of the example project's v1, and v1 promoted to production."""
    edit_prompt(NAME, "temperature: 0.0", "temperature: 0.1")
    commit_all("Warmer", date="2026-11-21T09:00:00+00:00")
    promptops.promote(NAME, version="v1")


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


KILLED_MOVE = """
import os, sys
os.chdir(sys.argv[1])
from promptops.versioning import _promotion as promotion
from promptops.evaluation import Verdict
verdict = Verdict(True, "non_inferior", 0.02, "accuracy", 1, "candidate", None, 0.5, None, None, None, None, None, None, None, ())
promotion.run_gate = lambda *args, **kwargs: (verdict, {})
if sys.argv[2] == "rollback":
    promotion.rollback("banking_intent")
else:
    promotion.promote("banking_intent", version=sys.argv[2])
print("not killed")
"""
STEPS = ("journal", "staged", "committed", "synced", "tagged", "registered", "aliased", "audited")


def kill_at(repo, step: str, move: str) -> None:
    """Run `promote --version v1|v2` or `rollback` in a child process killed (SIGKILL) at `step` of the move."""
    child = subprocess.run([sys.executable, "-c", KILLED_MOVE, repo.working_tree_dir, move], capture_output=True, text=True,
                           timeout=180, env={**os.environ, "PROMPTOPS_KILL_AT": step, "PYTHONPATH": str(REPO)})
    assert child.returncode == -signal.SIGKILL, (step, child.stdout, child.stderr[-2000:])


def users_commit_all(repo) -> bool:
    """What a user does next without a thought: `git commit -am` with an unrelated edit; True if git committed."""
    notes = Path(repo.working_tree_dir) / "judges" / "ticket_title.yaml"
    before = notes.read_text()
    notes.write_text(before + "# A note.\n")
    done = subprocess.run(["git", "commit", "-qam", "Unrelated work"], cwd=repo.working_tree_dir, capture_output=True, text=True)
    if done.returncode != 0:
        assert "index.lock" in done.stderr, done.stderr  # git refuses while the killed move still holds its index lock
        notes.write_text(before)
    return done.returncode == 0


def assert_consistent(repo, channels: Path, registry_label, step: str) -> str:
    """After the next promptops command: git, the registry and `load` agree, and the work tree is clean."""
    served = served_version(f"{NAME}@production")
    assert sync(repair=False) == [], step
    assert registry_label() == served.label, step
    assert promptops.load(f"{NAME}@production", guardrails=False).prompt == served.prompt, step
    assert channels.read_text() == read_committed(repo, f"prompts/channels/{NAME}.yaml"), step
    assert not repo.is_dirty(untracked_files=True), (step, repo.git.status())
    assert not (Path(repo.git_dir) / "promptops-move.json").exists(), step
    assert not (Path(repo.git_dir) / "index.lock").exists(), step
    assert tracking.pending_move(NAME) is None, step
    return served.label


def test_a_promote_killed_at_each_step_leaves_the_old_or_the_new_version_never_between(
        git_project, mlflow_store: str, pass_the_gate, registry_label, edit_prompt, commit_all) -> None:
    """And a user's `git commit -am` right after the kill never changes what production serves."""
    repo = git_project
    pass_the_gate()
    production_v1_and_a_v2(edit_prompt, commit_all)
    channels = channels_file(NAME, Path(repo.working_tree_dir))
    commits = {label: served_version(f"{NAME}@{label}").commit for label in ("v1", "v2")}
    current, landed, committed = "v1", {}, {}
    for step in STEPS:
        target = "v2" if current == "v1" else "v1"
        kill_at(repo, step, target)

        served = served_version(f"{NAME}@production")  # read from HEAD, before anything is repaired
        assert served.label in (current, target), step
        on_disk = yaml.safe_load(channels.read_text())  # whole, never half-written
        assert on_disk["production"]["commit"] in (commits[current], commits[target]), step
        landed[step] = served.label == target
        committed[step] = users_commit_all(repo)
        assert served_version(f"{NAME}@production").label == served.label, step  # the user's commit changed nothing served

        sync()  # finishes (or drops) the interrupted move under the lock
        current = assert_consistent(repo, channels, registry_label, step)
        assert current == served.label, step
    assert landed == {"journal": False, "staged": False, "committed": True, "synced": True, "tagged": True, "registered": True,
                      "aliased": True, "audited": True}
    assert committed == {"journal": True, "staged": False, "committed": False, "synced": True, "tagged": True, "registered": True,
                         "aliased": True, "audited": True}
    assert promptops.rollback(NAME).to_label in ("v1", "v2")  # the channel is usable afterwards


def test_a_rollback_killed_at_each_step_and_run_again_rolls_back_once(
        git_project, mlflow_store: str, pass_the_gate, registry_label, edit_prompt, commit_all) -> None:
    """Each round: production v2 (from v1), a rollback killed at one step, the user's `git commit -am`, the same
    rollback run again. It ends on v1, whatever the step: finished, or done again if it had not been committed;
    never a second step back to v2."""
    repo = git_project
    pass_the_gate()
    production_v1_and_a_v2(edit_prompt, commit_all)
    channels = channels_file(NAME, Path(repo.working_tree_dir))
    matrix = {}
    for step in STEPS:
        promptops.promote(NAME, version="v2")
        kill_at(repo, step, "rollback")
        after_kill = served_version(f"{NAME}@production").label
        users_commit_all(repo)
        assert served_version(f"{NAME}@production").label == after_kill, step
        again = promptops.rollback(NAME)
        assert (again.from_label, again.to_label) == ("v2", "v1"), step
        matrix[step] = (after_kill, "finished" if again.note and "did not move again" in again.note else "rolled back")
        assert assert_consistent(repo, channels, registry_label, step) == "v1", step
    assert matrix == {"journal": ("v2", "rolled back"), "staged": ("v2", "rolled back")} | {
        step: ("v1", "finished") for step in STEPS[2:]}


def test_an_uncommitted_channels_file_is_never_served_and_refused_by_promote_and_rollback(
        git_project, mlflow_store: str, pass_the_gate, registry_label, edit_prompt, commit_all) -> None:
    repo = git_project
    pass_the_gate()
    production_v1_and_a_v2(edit_prompt, commit_all)
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


# --- git states a move must not be lost in (issue 25) ------------------------------------------


def test_a_move_on_a_detached_head_or_during_a_merge_is_refused_and_changes_nothing(
        git_project, mlflow_store: str, pass_the_gate, registry_label, edit_prompt, commit_all, assert_one_line_error) -> None:
    repo = git_project
    pass_the_gate()
    repo.git.branch("-M", "main")
    production_v1_and_a_v2(edit_prompt, commit_all)
    head = repo.head.commit.hexsha
    repo.git.checkout("--detach")
    for args in (["promote", NAME, "--version", "v2"], ["rollback", NAME, "--to", "v2"]):
        line = assert_one_line_error(CliRunner().invoke(main, args))
        assert line == (f"Error: HEAD is detached at {head[:8]} in {repo.working_tree_dir}: a channel move is a commit on a branch, "
                        "and a commit on a detached HEAD is lost at the next checkout; check out the branch the channels live on "
                        "(for example `git checkout main`), then run again; nothing was changed"), line
    assert repo.head.commit.hexsha == head and registry_label() == "v1"
    repo.git.checkout("main")

    # a merge stopped on a conflict elsewhere: the move would be mixed into the user's merge
    repo.git.checkout("-b", "side")
    edit_prompt(NAME, "temperature: 0.1", "temperature: 0.3")
    commit_all("Side", date="2026-11-22T09:00:00+00:00")
    repo.git.checkout("main")
    edit_prompt(NAME, "temperature: 0.1", "temperature: 0.2")
    commit_all("Main", date="2026-11-22T10:00:00+00:00")
    merged = subprocess.run(["git", "merge", "side"], cwd=repo.working_tree_dir, capture_output=True, text=True)
    assert merged.returncode != 0
    line = assert_one_line_error(CliRunner().invoke(main, ["rollback", NAME, "--to", "v2"]))
    assert "a merge is in progress" in line and "`git commit` or `git merge --abort`" in line, line
    assert served_version(f"{NAME}@production").label == "v1" and registry_label() == "v1"


def test_status_reports_every_inconsistency_in_one_line_each_and_exits_1(
        git_project, mlflow_store: str, pass_the_gate, registry_label, edit_prompt, commit_all) -> None:
    repo = git_project
    root = Path(repo.working_tree_dir)
    pass_the_gate()
    repo.git.branch("-M", "main")
    production_v1_and_a_v2(edit_prompt, commit_all)
    promptops.promote("restaurant_booking")
    clean = CliRunner().invoke(main, ["status"])
    assert clean.exit_code == 0 and "problem" not in clean.stdout, clean.stdout

    kill_at(repo, "committed", "v2")  # git moved, the alias did not: both the journal and the drift show
    v1 = tracking.registry_aliases(NAME)["production"]
    assert registry_label() == "v1" and served_version(f"{NAME}@production").label == "v2"
    (root / "prompts" / "restaurant_booking.yaml").unlink()  # a prompt with channels and no file
    result = CliRunner().invoke(main, ["status"])
    assert result.exit_code == 1, result.output
    problems = [line.removeprefix("problem ") for line in result.stdout.splitlines() if line.startswith("problem ")]
    assert problems == [
        f"a promote of {NAME} production to v2 was interrupted (promptops-move.json in the git directory): git and the "
        "registry may disagree until `promptops sync` (or the next promote or rollback) finishes or drops it",
        f"{NAME} production: git serves v2 but the production alias points at registry version {v1} (v1), not v2; run "
        "`promptops sync` to make the registry agree with git",
        "prompts/restaurant_booking.yaml does not exist but prompts/channels/restaurant_booking.yaml still serves production v1: "
        "restore the file (`git checkout HEAD -- prompts/restaurant_booking.yaml`), or commit its deletion and roll the "
        "channels back",
    ], result.stdout
    report = json.loads(CliRunner().invoke(main, ["status", "--json"]).stdout)
    assert report["problems"] == problems
    assert "restaurant_booking" not in {row["prompt"] for row in report["prompts"]} and NAME in {row["prompt"] for row in report["prompts"]}

    assert [drift.problem for drift in sync()] == [f"finished an interrupted promote of {NAME} production to v2"]
    repo.git.checkout("HEAD", "--", "prompts/restaurant_booking.yaml")
    assert CliRunner().invoke(main, ["status"]).exit_code == 0

    # two branches moved the channel: their merge stops on a conflict in the channels file
    repo.git.checkout("-b", "side")
    promptops.rollback(NAME, reason="on the side branch")
    repo.git.checkout("main")
    promptops.promote(NAME, version="v1", reason="on main")
    merged = subprocess.run(["git", "merge", "side"], cwd=repo.working_tree_dir, capture_output=True, text=True)
    assert merged.returncode != 0 and "CONFLICT" in merged.stdout, merged.stdout
    result = CliRunner().invoke(main, ["status"])
    assert result.exit_code == 1
    assert (f"problem prompts/channels/{NAME}.yaml has an unresolved merge conflict: keep one side (`git checkout --ours -- "
            f"prompts/channels/{NAME}.yaml` or `--theirs`), then `git add` and commit; promote and rollback refuse until then"
            ) in result.stdout, result.stdout


def test_a_registry_served_alone_warns_while_a_move_is_unfinished(
        git_project, mlflow_store: str, pass_the_gate, edit_prompt, commit_all, monkeypatch, tmp_path: Path, caplog) -> None:
    repo = git_project
    pass_the_gate()
    production_v1_and_a_v2(edit_prompt, commit_all)
    kill_at(repo, "registered", "v2")
    assert tracking.pending_move(NAME).startswith("promote of production to v2 (from ")
    monkeypatch.chdir(tmp_path)  # a service with the tracking store and no repository
    with caplog.at_level("WARNING", logger="promptops"):
        served = served_version(f"{NAME}@production")
    assert served.label == "v1"
    assert "which may be behind git: a promote of production to v2" in caplog.text, caplog.text
    monkeypatch.chdir(repo.working_tree_dir)
    sync()
    assert tracking.pending_move(NAME) is None


def test_versions_lists_an_invalid_historical_version_instead_of_failing(git_project, mlflow_store: str, edit_prompt, commit_all) -> None:
    path = edit_prompt(NAME, "max_tokens: 32", "max_tokens: 0")
    commit_all("Oops", date="2026-11-21T09:00:00+00:00")
    edit_prompt(NAME, "max_tokens: 0", "max_tokens: 32")
    commit_all("Fixed", date="2026-11-22T09:00:00+00:00")
    result = CliRunner().invoke(main, ["versions", NAME, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["version"] for row in rows] == ["v1", "v2", "v3"]
    assert rows[1]["problem"].startswith(f"invalid: prompts/{NAME}.yaml@") and "max_tokens" in rows[1]["problem"], rows[1]
    assert rows[0]["problem"] is None and rows[2]["problem"] is None
    assert path.exists()


def test_the_audit_names_the_commits_author(git_project, mlflow_store: str, pass_the_gate, monkeypatch) -> None:
    pass_the_gate()
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Grace Hopper")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "grace@example.com")
    move = promptops.promote(NAME)
    repo = git_project
    assert repo.commit(move.commit).author.name == "Grace Hopper"
    history = yaml.safe_load(channels_file(NAME, Path(repo.working_tree_dir)).read_text())["history"]
    assert history[-1]["by"] == "Grace Hopper <grace@example.com>"
