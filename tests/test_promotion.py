"""Promote, rollback, the gate, runtime loading and drift repair, in temporary git repositories
and MLflow stores; git channels and registry aliases must agree after every command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import promptops
from promptops import tracking
from promptops.errors import PromptopsError, TrackingError
from promptops.versioning import pointers, read_channels, resolve
from promptops.versioning import ChannelBusyError, GateFailedError, sync

NAME = "banking_intent"


def channel_labels() -> dict[str, str]:
    """Channel → the label of the commit it serves, as `promptops status` shows it."""
    path = Path("prompts") / f"{NAME}.yaml"
    return {channel: resolve(path.resolve(), channel).label for channel in pointers(NAME)}


def snapshot(repo) -> tuple:
    channels = Path(repo.working_tree_dir) / "prompts" / "channels" / f"{NAME}.yaml"
    return (repo.head.commit.hexsha, sorted(t.name for t in repo.tags), channels.read_text() if channels.exists() else None,
            tracking.registry_aliases(NAME))


@pytest.mark.model
def test_promote_edit_promote_rollback_and_rollback_again(
        git_project, mlflow_store: str, tmp_path: Path, monkeypatch, registry_label, edit_prompt, commit_all) -> None:
    repo = git_project
    first = promptops.promote(NAME, limit=2)
    assert (first.from_label, first.to_label, first.gate.passed) == (None, "v1", True)
    assert registry_label() == "v1" and f"prompts/{NAME}/v1" in [t.name for t in repo.tags]
    assert repo.head.commit.message.startswith(f"promote {NAME} v1 to production")

    edit_prompt(NAME, "answer with the one intent label", "answer with exactly one intent label")

    commit_all("Say exactly")
    second = promptops.promote(NAME, limit=2, tolerance=1.0)
    assert (second.from_label, second.to_label) == ("v1", "v2") and registry_label() == "v2"
    assert second.gate.baseline_score is not None and second.gate.difference is not None

    back = promptops.rollback(NAME)
    assert (back.from_label, back.to_label) == ("v2", "v1")
    assert channel_labels() == {"production": "v1"} and registry_label() == "v1"
    program = promptops.load(f"{NAME}@production")
    assert "answer with the one intent label" in program.prompt.instructions

    monkeypatch.chdir(tmp_path)  # no git repository, no prompts/: the registry serves the channel
    from_registry = promptops.load(f"{NAME}@production")
    assert from_registry.prompt == program.prompt
    monkeypatch.chdir(repo.working_tree_dir)

    again = promptops.rollback(NAME)
    assert (again.from_label, again.to_label) == ("v1", "v2") and registry_label() == "v2"
    history = read_channels(NAME)["history"]
    assert [(h["action"], h["from"], h["to"]) for h in history] == [
        ("promote", None, "v1"), ("promote", "v1", "v2"), ("rollback", "v2", "v1"), ("rollback", "v1", "v2")]
    assert all(later["from_commit"] == earlier["commit"] for earlier, later in zip(history, history[1:]))
    assert all(h["by"] == "Ada Lovelace <ada@example.com>" for h in history)
    assert sync() == []  # git and registry agree
    gate_runs = tracking.last_evals(NAME)  # the gate's evals are ordinary eval runs
    assert {run["split"] for run in gate_runs.values()} == {"test"} and len(gate_runs) == 2


@pytest.mark.model
def test_a_failed_gate_prints_both_metrics_and_changes_nothing(
        git_project, mlflow_store: str, edit_prompt, commit_all) -> None:
    repo = git_project
    promptops.promote(NAME, limit=2)
    edit_prompt(NAME, "max_tokens: 32", "max_tokens: 24")
    commit_all("Shorter answers")
    before = snapshot(repo)
    with pytest.raises(GateFailedError) as failed:
        promptops.promote(NAME, limit=2, max_cost_usd=1e-12)
    message = str(failed.value)
    assert "vs" in message and "(production v1)" in message and "95% CI" in message and "McNemar p" in message
    assert "rule non_inferior (tolerance 0.02) fails" in message and "above the limit" in message
    assert "nothing was changed" in message
    assert snapshot(repo) == before


@pytest.mark.model
def test_a_registry_failure_mid_promote_leaves_no_partial_state(
        git_project, mlflow_store: str, monkeypatch, edit_prompt, commit_all) -> None:
    repo = git_project
    promptops.promote(NAME, limit=1)
    edit_prompt(NAME, "max_tokens: 32", "max_tokens: 24")
    commit_all("Shorter answers")
    before = snapshot(repo)

    def broken_alias(*args, **kwargs):
        raise TrackingError("the registry is down")

    with monkeypatch.context() as patch:
        patch.setattr(tracking, "set_alias", broken_alias)
        with pytest.raises(TrackingError, match="the registry is down"):
            promptops.promote(NAME, limit=1, tolerance=1.0)
    assert snapshot(repo) == before
    assert not repo.is_dirty(untracked_files=True)


def test_refusals(git_project, mlflow_store: str, tmp_path: Path, monkeypatch) -> None:
    path = Path(git_project.working_tree_dir) / "prompts" / f"{NAME}.yaml"
    path.write_text(path.read_text() + "\n# an uncommitted edit\n")
    with pytest.raises(PromptopsError, match="has uncommitted changes"):
        promptops.promote(NAME)
    with pytest.raises(PromptopsError, match="--force needs --reason"):
        promptops.promote(NAME, version="v1", force=True)
    with pytest.raises(PromptopsError, match="unknown channel 'live'"):
        promptops.promote(NAME, version="v1", channel="live")
    with pytest.raises(PromptopsError, match="no production version to roll back"):
        promptops.rollback(NAME)
    with pytest.raises(PromptopsError, match="has no version v7"):
        promptops.promote(NAME, version="v7")
    outside = tmp_path / "plain"
    (outside / "prompts").mkdir(parents=True)
    (outside / "prompts" / f"{NAME}.yaml").write_text(path.read_text())
    monkeypatch.chdir(outside)
    with pytest.raises(PromptopsError, match="not inside a git repository"):
        promptops.promote(NAME, version="v1")


HOLD_LOCK = """
import fcntl, sys
handle = open(sys.argv[1], "a+")
fcntl.flock(handle, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


def test_a_held_lock_refuses_promote_and_rollback_and_changes_nothing(
        git_project, mlflow_store: str, monkeypatch, pass_the_gate, registry_label, edit_prompt, commit_all) -> None:
    """Another process holds the channel lock: both commands wait the timeout, then refuse in one line."""
    from click.testing import CliRunner

    from promptops.cli import main

    pass_the_gate()
    edit_prompt(NAME, "temperature: 0.0", "temperature: 0.1")
    commit_all("Warmer")
    promptops.promote(NAME, version="v1")
    promptops.promote(NAME, version="v2")
    before, registered_before = snapshot(git_project), tracking.registry_versions(NAME)
    monkeypatch.setenv("PROMPTOPS_LOCK_TIMEOUT_S", "0.5")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(Path(git_project.git_dir) / "promptops.lock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for attempt in (lambda: promptops.promote(NAME, version="v1"), lambda: promptops.rollback(NAME)):
            started = time.monotonic()
            with pytest.raises(ChannelBusyError) as busy:
                attempt()
            assert 0.5 <= time.monotonic() - started < 5
            message = str(busy.value)
            assert "another promote or rollback is in progress" in message and "waited 0.5 s" in message
            assert "nothing was changed" in message and "PROMPTOPS_LOCK_TIMEOUT_S" in message
        for command in (["promote", NAME, "--version", "v1"], ["rollback", NAME]):
            result = CliRunner().invoke(main, command)
            assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
            assert result.stdout == "" and "Traceback" not in result.output
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("Error: another promote or rollback is in progress"), result.stderr
        assert snapshot(git_project) == before and tracking.registry_versions(NAME) == registered_before
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    back = promptops.rollback(NAME)  # the holder is gone, so the lock is free again
    assert (back.from_label, back.to_label) == ("v2", "v1") and registry_label() == "v1"


def test_a_lock_timeout_that_is_not_a_number_is_refused(git_project, mlflow_store: str, monkeypatch) -> None:
    monkeypatch.setenv("PROMPTOPS_LOCK_TIMEOUT_S", "two minutes")
    with pytest.raises(PromptopsError, match="PROMPTOPS_LOCK_TIMEOUT_S='two minutes' is not a number of seconds"):
        promptops.promote(NAME, version="v1")
    assert not (Path(git_project.working_tree_dir) / "prompts" / "channels").exists()


def test_sync_repairs_an_alias_moved_by_hand(
        git_project, mlflow_store: str, pass_the_gate, registry_label, edit_prompt, commit_all) -> None:
    from promptops.versioning import _promotion as promotion

    pass_the_gate()
    edit_prompt(NAME, "temperature: 0.0", "temperature: 0.1")
    commit_all("Warmer")
    promptops.promote(NAME, version="v1")
    promptops.promote(NAME, version="v2")
    tracking.set_alias(NAME, "production", 1)  # someone moves the alias in the MLflow UI
    drift = sync(repair=False)
    assert [(d.channel, d.git_label, d.registry_label, d.repaired) for d in drift] == [("production", "v2", "v1", False)]
    assert drift[0].problem == "the production alias points at registry version 1 (v1), not v2"
    assert [d.repaired for d in sync()] == [True]
    assert registry_label() == "v2" and sync() == []
    from promptops.cli import main
    from click.testing import CliRunner

    row = next(r for r in promotion.status() if r.prompt == NAME)
    assert (row.channels, row.latest_version, row.working_file_changed) == ({"production": "v2"}, 2, False)
    listing = json.loads(CliRunner().invoke(main, ["versions", NAME, "--json"]).stdout)
    assert [(v["number"], v["channels"]) for v in listing] == [(1, None), (2, "production")]


def test_sync_registers_again_a_registry_version_deleted_by_hand(
        git_project, mlflow_store: str, pass_the_gate, edit_prompt, commit_all) -> None:
    """Git is the source of truth: the deleted version comes back with the same YAML and tags."""
    import mlflow
    from click.testing import CliRunner

    from promptops.cli import main

    pass_the_gate()
    edit_prompt(NAME, "temperature: 0.0", "temperature: 0.1")
    commit_all("Warmer")
    promptops.promote(NAME, version="v1")
    deleted = promptops.promote(NAME, version="v2").registry_version
    tags = tracking.registry_versions(NAME)[deleted]
    assert (tags["prompt_version"], tags["metric.accuracy"], tags["metric.cost_usd"]) == ("v2", "0.5", "1.18125e-05")
    text, _ = tracking.load_registered_text(NAME, "production")
    mlflow.MlflowClient().delete_prompt_version(NAME, str(deleted))  # someone deletes it in the MLflow UI
    assert "production" not in tracking.registry_aliases(NAME)  # MLflow drops the alias with the version

    checked = CliRunner().invoke(main, ["sync", "--check"])
    assert checked.exit_code == 1
    assert f"drift: {NAME} production: git says v2; the registry version holding v2 was deleted" in checked.stdout
    drift = sync(repair=False)
    assert [(d.channel, d.git_label, d.registry_label, d.repaired) for d in drift] == [("production", "v2", None, False)]
    assert drift[0].problem == "the registry version holding v2 was deleted, and the production alias with it"
    assert "production" not in tracking.registry_aliases(NAME)  # --check only reports

    repaired = CliRunner().invoke(main, ["sync"])
    assert repaired.exit_code == 0 and f"repaired: {NAME} production: git says v2" in repaired.stdout
    restored = tracking.registry_aliases(NAME)["production"]
    assert restored != deleted and tracking.registry_versions(NAME)[restored] == tags
    assert tracking.load_registered_text(NAME, "production")[0] == text == promptops.load(f"{NAME}@v2").prompt.to_yaml()
    assert sync() == [] and sync(repair=False) == []


def test_sync_sets_back_a_deleted_alias_and_removes_one_git_does_not_have(
        git_project, mlflow_store: str, pass_the_gate) -> None:
    pass_the_gate()
    promptops.promote(NAME, version="v1")
    registered = tracking.registry_versions(NAME)
    tracking.set_alias(NAME, "production", None)  # deleted by hand
    tracking.set_alias(NAME, "staging", 1)  # added by hand: git has no staging version
    drift = sync()
    assert [(d.channel, d.git_label, d.registry_label, d.repaired, d.problem) for d in drift] == [
        ("production", "v1", None, True, "the production alias is missing"),
        ("staging", None, "v1", True, "the registry has a staging alias (registry version 1) but git has no staging version"),
    ]
    assert tracking.registry_aliases(NAME) == {"production": 1}
    assert tracking.registry_versions(NAME) == registered  # the existing version is reused, not registered again
    assert sync() == []


CONCURRENT = """
import os, random, sys
os.chdir(sys.argv[1])
import promptops
from promptops.errors import PromptopsError
rng = random.Random(int(sys.argv[2]))
done = 0
for i in range(int(sys.argv[3])):
    reason = f"worker {sys.argv[2]} op {i}"
    try:
        if i % 2 == 0:
            move = promptops.promote("banking_intent", version=rng.choice(["v1", "v2", "v3"]), limit=1, tolerance=1.0, reason=reason)
            done += move.commit is not None
        else:
            promptops.rollback("banking_intent", reason=reason)
            done += 1
    except PromptopsError as exc:
        if not any(known in str(exc) for known in ("already serves", "no earlier version", "while the gate ran")):
            raise
print(done)
"""


@pytest.mark.model
def test_two_processes_moving_a_channel_end_consistent(
        git_project, mlflow_store: str, pass_the_gate, registry_label, edit_prompt, commit_all) -> None:
    """20 interleaved promote/rollback operations from 2 processes (the gate runs the real model on 1 example)."""
    pass_the_gate()
    edit_prompt(NAME, "temperature: 0.0", "temperature: 0.1")
    commit_all("Warmer")
    edit_prompt(NAME, "temperature: 0.1", "temperature: 0.2")
    commit_all("Warmer still")
    promptops.promote(NAME, version="v1")
    root = git_project.working_tree_dir
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    workers = [subprocess.Popen([sys.executable, "-c", CONCURRENT, root, str(seed), "10"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-2000:]
    moves = sum(int(out.strip()) for out, _ in outputs)
    history = read_channels(NAME)["history"]
    assert len(history) == 1 + moves
    for earlier, later in zip(history, history[1:]):  # every move starts where the previous one ended
        assert later["from_commit"] == earlier["commit"]
    assert registry_label() == channel_labels()["production"]
    assert sync(repair=False) == []
    assert not git_project.is_dirty(untracked_files=True)
    print(f"{moves} channel moves from 2 processes; git and registry agree")
