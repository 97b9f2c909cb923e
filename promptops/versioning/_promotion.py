"""Moving channels: promote (through the gate), rollback and the optimizer's `candidate`, in git and
MLflow's Prompt Registry together; `status` and `sync` read both.

Git is the source of truth: the committed channels file (`promptops.versioning._channels`). A move:

1. The gate runs first, outside the lock: two evals may take minutes, and a rollback must not
   wait for them (`promptops.evaluation._gate`).
2. Under the lock (one move at a time per repository): an interrupted earlier move is finished
   or dropped, an uncommitted channels file is refused, and the channel must still point where
   it did when the gate began.
3. The move itself: a journal in the git directory says what is about to happen; the new
   channels file becomes one commit, made from objects and published with one
   compare-and-swap of the branch (`versions.make_commit`, `versions.move_head`); the work
   tree catches up; then the tag `prompts/NAME/vN`, the registry version and its alias, and an
   audit run. An exception undoes every step. A process killed at any point leaves git as it
   was (no commit yet) or with the whole move; the journal lets the next promote, rollback or
   sync finish the registry's part.
"""

from __future__ import annotations

import dataclasses
import fcntl
import getpass
import json
import os
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

import yaml

from promptops.artifact import Prompt, atomic_write_text, find_project_root, resolve_prompt_path
from promptops.versioning._channels import (
    CHANNELS,
    Pointer,
    ResolvedVersion,
    channels_file,
    display_label,
    parse_channels,
    pointers,
    pointers_in,
    previous_commit,
    read_channels,
    resolve,
)
from promptops.errors import PromptopsError, WriteRefusedError
from promptops.versioning import _git as versions

DEFAULT_LOCK_TIMEOUT_S = 120.0
_JOURNAL = "promptops-move.json"


class GateFailedError(PromptopsError):
    """The candidate did not pass the gate against the version the channel serves."""


class ChannelBusyError(PromptopsError):
    """Another process is moving channels."""


class ChannelMovedError(PromptopsError):
    """The channel moved while the gate ran, so the gate judged against a version it no longer serves."""


@dataclass(frozen=True)
class ChannelMove:
    """What a promote or rollback did; `commit` is None when nothing had to move."""

    prompt: str
    channel: str
    action: str
    from_label: Optional[str]
    to_label: str
    from_commit: Optional[str]
    to_commit: str
    commit: Optional[str]  # the channels commit
    registry_version: Optional[int]
    audit_run_id: Optional[str]
    gate: Any = None  # a gate.Verdict for promote
    evidence: Optional[dict[str, Any]] = None  # the runs and data the gate judged on
    note: Optional[str] = None  # an interrupted earlier move this command found first, and what it did about it


# --- the lock ------------------------------------------------------------------------


@contextmanager
def channel_lock(repo: Any, timeout_s: Optional[float] = None) -> Iterator[None]:
    """One channel move at a time per repository; a second process waits, then refuses.

    flock, not a lock file that exists or not: the kernel drops the lock when its holder dies,
    so a crashed promote never leaves the channels locked."""
    timeout_s = _lock_timeout_s() if timeout_s is None else timeout_s
    path = versions.git_dir(repo) / "promptops.lock"
    try:
        handle = open(path, "a+")
    except OSError as exc:
        if exc.errno not in WriteRefusedError.REFUSALS:
            raise
        raise WriteRefusedError(path, exc) from None
    with handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ChannelBusyError(
                        f"another promote or rollback is in progress in {repo.working_tree_dir} (waited {timeout_s:g} s"
                        f" for the lock {path}); nothing was changed: run the command again when it ends,"
                        " or set PROMPTOPS_LOCK_TIMEOUT_S to wait longer"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_timeout_s() -> float:
    """Read at each move, not at import, so a long-lived process honours a changed setting."""
    raw = os.environ.get("PROMPTOPS_LOCK_TIMEOUT_S")
    if not raw:
        return DEFAULT_LOCK_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise PromptopsError(f"PROMPTOPS_LOCK_TIMEOUT_S={raw!r} is not a number of seconds: set it to e.g. 120, or unset it")
    return value


# --- the gate ------------------------------------------------------------------------


def run_gate(
    candidate: Prompt,
    current: Optional[Prompt],
    *,
    labels: tuple[str, Optional[str]],
    commits: tuple[str, Optional[str]],
    spec: Any,
    data: Optional[str | Path] = None,
    split: str = "test",
    limit: Optional[int] = None,
    max_cost_usd: Optional[float] = None,
) -> tuple[Any, dict[str, Any]]:
    """Both versions on the same committed examples, judged by the gate's rule; (verdict, evidence).

    Each side is logged as an ordinary eval run (so `status` and `versions` show what the gate
    measured), and the pair as a comparison run holding the verdict."""
    from promptops import tracking
    from promptops.evaluation import gate_verdict
    from promptops.evaluation import Contender, EvalOptions, compare_contenders
    from promptops.versioning._contenders import require_committed_data
    from promptops.evaluation import load_dataset
    from promptops.evaluation import evaluate

    require_committed_data(candidate, data, split)
    dataset = load_dataset(candidate, data, split).head(limit)
    name = candidate.name
    evidence: dict[str, Any] = {"data": _shown(dataset.path), "split": split, "rows": len(dataset),
                                "data_digest": getattr(dataset, "digest", None)}
    if current is None:
        result = evaluate(candidate, dataset=dataset, split=split, metric=candidate.eval.metric)
        evidence["candidate_run"] = tracking.log_eval(result, candidate, git_commit=commits[0])
        verdict = gate_verdict(spec, candidate=result, candidate_label=labels[0], threshold=candidate.eval.threshold,
                             max_cost_usd=max_cost_usd)
        return verdict, evidence
    comparison = compare_contenders(
        Contender(f"{name}@{labels[1]}", str(labels[1]), current, commits[1]), Contender(f"{name}@{labels[0]}", labels[0], candidate, commits[0]),
        EvalOptions(split=split, metric=candidate.eval.metric), dataset=dataset, confidence=spec.confidence)
    evidence["candidate_run"] = tracking.log_eval(comparison.b_result, candidate, git_commit=commits[0])
    evidence["current_run"] = tracking.log_eval(comparison.a_result, current, git_commit=commits[1])
    verdict = gate_verdict(spec, comparison=comparison, threshold=candidate.eval.threshold, max_cost_usd=max_cost_usd)
    evidence["comparison_run"] = tracking.log_comparison(comparison, kind="gate", verdict=verdict.summary())
    return verdict, evidence


# --- promote and rollback -------------------------------------------------------------


def promote(
    name: str,
    *,
    version: Optional[str] = None,
    channel: str = "production",
    data: Optional[str | Path] = None,
    split: str = "test",
    limit: Optional[int] = None,
    rule: Optional[str] = None,
    tolerance: Optional[float] = None,
    max_cost_usd: Optional[float] = None,
    force: bool = False,
    reason: Optional[str] = None,
) -> ChannelMove:
    """Move `channel` to a committed version of the prompt, through the gate (see `promptops.evaluation._gate`)."""
    from promptops.evaluation import rule_for

    _check_channel(channel)
    if force and not reason:
        raise PromptopsError("--force needs --reason: say why the gate is overridden, it goes into the audit trail")
    from promptops import tracking

    prompt_file = resolve_prompt_path(name)
    repo = versions.open_repo(prompt_file)
    _refuse_branch_state(repo)
    tracking.check_store()  # before the gate's paid evals, not after them
    if version is None and versions.has_uncommitted_changes(prompt_file):
        raise PromptopsError(
            f"{prompt_file.name} has uncommitted changes: commit them (they become the next version) or name a --version"
        )
    with channel_lock(repo):
        interrupted = finish_interrupted_move(repo)
    start = pointers(name).get(channel)
    target = resolve(prompt_file, version or "HEAD")
    resumed = _resumed(interrupted, name, channel, "promote", target.commit)
    if resumed is not None:
        return resumed
    if start is not None and start.commit == target.commit:
        return _unmoved(name, channel, "promote", start, target)
    candidate = versions.load_prompt_at(prompt_file, target.commit)
    spec = rule_for(candidate, rule=rule, tolerance=tolerance)
    if start is not None:
        baseline_commit: Optional[str] = start.commit
        current_label: Optional[str] = f"{channel} {display_label(prompt_file, start.commit, start.label)}"
    else:  # a first promotion is gated too: against the version committed before it, if there is one
        earlier = _version_before(prompt_file, target.commit)
        baseline_commit = earlier.commit if earlier else None
        current_label = f"previous version {earlier.label}, no {channel} yet" if earlier else None
    current = versions.load_prompt_at(prompt_file, baseline_commit) if baseline_commit else None
    verdict, evidence = run_gate(candidate, current, labels=(target.label, current_label), commits=(target.commit, baseline_commit),
                                 spec=spec, data=data, split=split, limit=limit, max_cost_usd=max_cost_usd)
    if not verdict.passed and not force:
        raise GateFailedError(f"gate failed for {name} {target.label} → {channel}: {verdict.line()}; nothing was changed")
    metrics = {"candidate": {verdict.metric: verdict.candidate_score, "cost_usd": verdict.candidate_cost_usd, "n": verdict.n}}
    if verdict.baseline_score is not None:
        metrics["current"] = {verdict.metric: verdict.baseline_score, "cost_usd": verdict.baseline_cost_usd, "n": verdict.n}
    with channel_lock(repo):
        _refuse_branch_state(repo)
        interrupted = finish_interrupted_move(repo) or interrupted
        _refuse_uncommitted_channels(repo, name)
        now = pointers(name).get(channel)
        if (now.commit if now else None) != (start.commit if start else None):
            moved_to = resolve(prompt_file, channel).label if now else "nothing"
            raise ChannelMovedError(f"{name} {channel} moved to {moved_to} while the gate ran; nothing was changed: run promote again")
        move = _move_channel(repo, prompt_file, candidate, target, channel, "promote", start, metrics,
                             reason or ("gate overridden" if not verdict.passed else None),
                             gate=verdict.summary(), evidence=evidence)
    return dataclasses.replace(move, gate=verdict, evidence=evidence, note=interrupted.message if interrupted else None)


def rollback(name: str, *, channel: str = "production", to: Optional[str] = None, reason: Optional[str] = None) -> ChannelMove:
    """Move `channel` back to the commit it served before its last move (or to `to`); no gate.

    Run again after a rollback that was killed, it finishes that rollback and does not roll back once more."""
    from promptops import tracking

    _check_channel(channel)
    prompt_file = resolve_prompt_path(name)
    repo = versions.open_repo(prompt_file)
    tracking.check_store()  # the move's registry steps need it: fail before git moves, not half-way
    with channel_lock(repo):
        _refuse_branch_state(repo)
        interrupted = finish_interrupted_move(repo)
        resumed = _resumed(interrupted, name, channel, "rollback", resolve(prompt_file, to).commit if to else None)
        if resumed is not None:
            return resumed
        _refuse_uncommitted_channels(repo, name)
        current = pointers(name).get(channel)
        if current is None:
            raise PromptopsError(f"{name} has no {channel} version to roll back")
        if to is None:
            to = previous_commit(name, channel)
            if to is None:
                raise PromptopsError(f"{name} {channel} has no earlier version to roll back to")
        target = resolve(prompt_file, to)
        if target.commit == current.commit:
            raise PromptopsError(f"{name} {channel} already serves {target.label}")
        served_before = _served_before(name, channel)
        if target.commit not in served_before:
            earlier = ", ".join(dict.fromkeys(display_label(prompt_file, commit, commit[:8]) for commit in served_before
                                              if commit != current.commit)) or "none"
            raise PromptopsError(
                f"{name} {channel} never served {target.label}: a rollback goes back to a version {channel} served before "
                f"({earlier}); to serve {target.label}, promote it (through the gate): promptops promote {name} --version {target.label}")
        prompt = versions.load_prompt_at(prompt_file, target.commit)
        move = _move_channel(repo, prompt_file, prompt, target, channel, "rollback", current, {}, reason)
        return dataclasses.replace(move, note=interrupted.message if interrupted else None)


def assign_channel(name: str, version: str, channel: str, *, action: str, metrics: dict[str, Any], reason: str,
                   gate: Optional[dict[str, Any]] = None) -> ChannelMove:
    """Point `channel` at `version` for a step that ran the gate itself (the optimizer's `candidate`).

    Same lock, atomicity and audit as promote; `production` always goes through `promote`."""

    _check_channel(channel)
    if channel == "production":
        raise PromptopsError("production is moved only by promote, through the eval gate")
    prompt_file = resolve_prompt_path(name)
    repo = versions.open_repo(prompt_file)
    with channel_lock(repo):
        _refuse_branch_state(repo)
        finish_interrupted_move(repo)
        _refuse_uncommitted_channels(repo, name)
        target = resolve(prompt_file, version)
        current = pointers(name).get(channel)
        if current is not None and current.commit == target.commit:
            return _unmoved(name, channel, action, current, target)
        prompt = versions.load_prompt_at(prompt_file, target.commit)
        return _move_channel(repo, prompt_file, prompt, target, channel, action, current, metrics, reason, gate=gate)


# --- one move, all or nothing -----------------------------------------------------------


def _move_channel(repo: Any, prompt_file: Path, prompt: Prompt, target: ResolvedVersion, channel: str, action: str,
                  current: Optional[Pointer], metrics: dict[str, Any], reason: Optional[str], *,
                  gate: Optional[dict[str, Any]] = None, evidence: Optional[dict[str, Any]] = None) -> ChannelMove:
    from promptops import tracking

    name = prompt.name
    path = channels_file(name)
    relative = versions.relative_path(repo, path)
    head_before = versions.head_commit(repo)
    state = parse_channels(versions.read_committed(repo, relative), f"{relative}@HEAD")
    entry = {
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "by": _who(repo),
        "action": action,
        "channel": channel,
        "from": current.label if current else None,
        "from_commit": current.commit if current else None,
        "to": target.label,
        "commit": target.commit,
        "reason": reason,
        "metrics": _plain(metrics),
    }
    if gate:
        entry["gate"] = _plain(gate)
    if evidence:
        entry["evidence"] = evidence
    state[channel] = {"commit": target.commit, "label": target.label, "content_hash": prompt.content_hash}
    state["history"].append(entry)
    message = f"{action} {name} {target.label} to {channel}" + (f": {reason}" if reason else "")
    tag_name = f"prompts/{name}/{target.label}" if target.label.startswith("v") and " " not in target.label else None
    journal = {"prompt": name, "prompt_file": str(prompt_file), "channels_file": str(path), "channel": channel,
               "head_before": head_before, "target_commit": target.commit, "label": target.label, "tag": tag_name,
               "tag_existed": bool(tag_name) and versions.resolve_commit(repo, f"refs/tags/{tag_name}") is not None,
               "entry": entry, "commit": None, "previous_alias": None, "alias_moved": False}
    journal_path = _journal_path(repo)
    atomic_write_text(journal_path, json.dumps(journal))
    _quietly(tracking.mark_move_pending, name, f"{action} of {channel} to {target.label} (from {journal['head_before'][:8]})")
    _step("journal")
    moved = False
    try:
        commit = versions.make_commit(repo, path, _channels_yaml(state), message, parent=head_before)
        journal["commit"] = commit
        atomic_write_text(journal_path, json.dumps(journal))
        # git's index lock is held from before the file is staged until the new index is in place, so no
        # `git commit -am` can slip in between and commit the old channels file over the move.
        with versions.IndexLock(repo) as index:
            journal["index_lock"] = index.inode
            atomic_write_text(journal_path, json.dumps(journal))
            index.stage(path, _channels_yaml(state))
            _step("staged")
            versions.move_head(repo, commit, expected=head_before)  # the move happens here, whole
            moved = True
            _step("committed")
            index.publish()
        _step("synced")
        if tag_name:
            versions.tag(repo, tag_name, target.commit, f"{name} {target.label}, moved to {channel}")
        _step("tagged")
        flat_metrics = {k: v for k, v in (metrics.get("candidate") or {}).items() if isinstance(v, (int, float))}
        registry_version = tracking.register_prompt_version(prompt, git_commit=target.commit, label=target.label, metrics=flat_metrics)
        _step("registered")
        journal["previous_alias"] = tracking.registry_aliases(name).get(channel)
        atomic_write_text(journal_path, json.dumps(journal))
        tracking.set_alias(name, channel, registry_version)
        journal["alias_moved"] = True
        _step("aliased")
        audit_run_id = tracking.log_audit(name, {**entry, "registry_version": registry_version, "git_commit": commit})
        _step("audited")
        if prompt.is_agent:  # informational: the move is done whether or not MLflow takes the tag
            _quietly(tracking.mark_agent_version, prompt, target.label, target.commit, channel)
    except BaseException:
        _undo(repo, journal, moved)
        raise
    journal_path.unlink(missing_ok=True)
    _quietly(tracking.mark_move_pending, name, None)
    return ChannelMove(name, channel, action, current.label if current else None, target.label,
                       current.commit if current else None, target.commit, commit, registry_version, audit_run_id)


def _undo(repo: Any, journal: dict[str, Any], moved: bool) -> None:
    """Put git and the registry back as they were before the move; every step is tried."""
    from promptops import tracking

    if journal["alias_moved"]:
        _quietly(tracking.set_alias, journal["prompt"], journal["channel"], journal["previous_alias"])
    if moved:
        _quietly(versions.move_head, repo, journal["head_before"], expected=journal["commit"])
    if journal.get("index_lock") is not None:  # the file was staged: put it and its index entry back as HEAD has them
        _quietly(versions.sync_work_tree, repo, Path(journal["channels_file"]))
    if journal["tag"] and not journal["tag_existed"]:
        _quietly(versions.delete_tag, repo, journal["tag"])
    _journal_path(repo).unlink(missing_ok=True)
    _quietly(tracking.mark_move_pending, journal["prompt"], None)


@dataclass(frozen=True)
class InterruptedMove:
    """A move whose process died, as the next promote, rollback or sync found it, and what it did about it."""

    prompt: str
    channel: str
    action: str  # promote, rollback, candidate
    label: str
    target_commit: str
    commit: Optional[str]  # the channels commit it made, if it got that far
    from_label: Optional[str]
    outcome: str  # "pending" (only looked at), "finished", "dropped", "reverted"
    serving: Optional[str] = None  # for "reverted": what the channel serves now

    @property
    def message(self) -> str:
        move = f"{self.action} of {self.prompt} {self.channel} to {self.label}"
        if self.outcome == "pending":
            return (f"a {move} was interrupted ({_JOURNAL} in the git directory): git and the registry may disagree until "
                    "`promptops sync` (or the next promote or rollback) finishes or drops it")
        if self.outcome == "finished":
            return f"finished an interrupted {move}"
        if self.outcome == "dropped":
            return f"dropped an interrupted {move} (it had not been committed; nothing changed)"
        return (f"an interrupted {move} was committed ({str(self.commit)[:8]}) but a later commit changed the channels "
                f"file back, so {self.channel} serves {self.serving or 'nothing'}; {self.action} again if {self.label} should be served")


def read_interrupted_move(repo: Any) -> Optional[InterruptedMove]:
    """The journal of a move whose process died, without touching it (`status`); None if there is none."""
    try:
        journal = json.loads(_journal_path(repo).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return _interrupted(journal, "pending")


def _interrupted(journal: dict[str, Any], outcome: str, serving: Optional[str] = None) -> InterruptedMove:
    entry = journal.get("entry") or {}
    return InterruptedMove(journal["prompt"], journal["channel"], entry.get("action", "move"), journal["label"],
                           journal["target_commit"], journal.get("commit"), entry.get("from"), outcome, serving)


def finish_interrupted_move(repo: Any) -> Optional[InterruptedMove]:
    """Settle a move whose process died (the caller holds the lock): finish it if its commit is on
    the branch, else drop it (git never changed). Returns what was found and done, or None."""
    from promptops import tracking

    journal_path = _journal_path(repo)
    if not journal_path.exists():
        return None
    try:
        journal = json.loads(journal_path.read_text(encoding="utf-8"))
    except ValueError:
        journal_path.unlink(missing_ok=True)  # written atomically, so only a foreign file is unreadable
        return None
    versions.release_index_lock(repo, journal.get("index_lock"))  # the lock the killed process held, and no other
    commit, head = journal.get("commit"), versions.head_commit(repo)
    landed = bool(commit) and versions.has_commit(repo, commit) and (commit == head or repo.is_ancestor(commit, head))
    name, channel = journal["prompt"], journal["channel"]
    channels_path = Path(journal["channels_file"])
    if not landed and journal["entry"] in _committed_history(repo, channels_path):
        landed = True  # the lock was removed by hand and the staged file committed: the move's own content is on the branch
    if not landed:
        if journal.get("index_lock") is not None and head == journal["head_before"]:
            versions.sync_work_tree(repo, channels_path)  # the file was staged before the kill: back to HEAD's
        journal_path.unlink(missing_ok=True)
        _quietly(tracking.mark_move_pending, name, None)
        return _interrupted(journal, "dropped")
    prompt_file = Path(journal["prompt_file"])
    if commit == head:
        versions.sync_work_tree(repo, channels_path)
    if journal.get("tag"):
        versions.tag(repo, journal["tag"], journal["target_commit"], f"{name} {journal['label']}, moved to {channel}")
    served = pointers(name, prompt_file.parent.parent).get(channel)
    if served is None or served.commit != journal["target_commit"]:
        journal_path.unlink(missing_ok=True)
        _quietly(tracking.mark_move_pending, name, None)
        serving = display_label(prompt_file, served.commit, served.label) if served else None
        return _interrupted(journal, "reverted", serving)
    prompt = versions.load_prompt_at(prompt_file, journal["target_commit"])
    registry_version = tracking.register_prompt_version(prompt, git_commit=journal["target_commit"], label=journal["label"],
                                                        metrics=_first_move_metrics(read_channels(name), journal["target_commit"]))
    tracking.set_alias(name, channel, registry_version)
    tracking.log_audit(name, {**journal["entry"], "registry_version": registry_version, "git_commit": commit,
                              "reason": f"{journal['entry'].get('reason') or ''} (finished after an interruption)".strip()})
    journal_path.unlink(missing_ok=True)
    _quietly(tracking.mark_move_pending, name, None)
    return _interrupted(journal, "finished")


def _committed_history(repo: Any, channels_path: Path) -> list[dict[str, Any]]:
    try:
        relative = versions.relative_path(repo, channels_path)
        return parse_channels(versions.read_committed(repo, relative), f"{relative}@HEAD")["history"]
    except PromptopsError:
        return []


def _journal_path(repo: Any) -> Path:
    return versions.git_dir(repo) / _JOURNAL


def _step(name: str) -> None:
    """A named point of a move where tests kill the process (PROMPTOPS_KILL_AT=name) to prove atomicity."""
    if os.environ.get("PROMPTOPS_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _version_before(prompt_file: Path, commit: str) -> Optional[Any]:
    """The committed version just before the one `commit` made, on this branch; None for v1 or a commit off the branch."""
    history = versions.prompt_versions(prompt_file)
    numbers = [version.number for version in history if version.commit == commit]
    return history[numbers[0] - 2] if numbers and numbers[0] > 1 else None


def _served_before(name: str, channel: str) -> list[str]:
    """Every commit the channel has pointed at, oldest first, from its committed history."""
    served = []
    for entry in read_channels(name)["history"]:
        if entry.get("channel") == channel:
            served += [commit for commit in (entry.get("from_commit"), entry.get("commit")) if commit]
    return served


def _refuse_branch_state(repo: Any) -> None:
    problem = versions.branch_problem(repo)
    if problem:
        raise PromptopsError(f"{problem}; nothing was changed")


def _resumed(interrupted: Optional[InterruptedMove], name: str, channel: str, action: str,
             target_commit: Optional[str]) -> Optional[ChannelMove]:
    """The move this command was asked to make, if it is the interrupted one just finished: a rerun
    after a kill completes the first run and does not move again (a second rollback would step back twice)."""
    if interrupted is None or interrupted.outcome != "finished":
        return None
    if (interrupted.prompt, interrupted.channel, interrupted.action) != (name, channel, action):
        return None
    if target_commit is not None and target_commit != interrupted.target_commit:
        return None
    return ChannelMove(name, channel, action, interrupted.from_label, interrupted.label, None, interrupted.target_commit,
                       interrupted.commit, None, None,
                       note=f"finished the {action} that was interrupted earlier; {channel} did not move again")


def _refuse_uncommitted_channels(repo: Any, name: str) -> None:

    path = channels_file(name)
    if path.exists() or versions.read_committed(repo, versions.relative_path(repo, path)) is not None:
        if versions.has_uncommitted_changes(path):
            relative = versions.relative_path(repo, path)
            raise PromptopsError(
                f"{relative} has uncommitted changes (an edit by hand or a merge in progress): channels move only through "
                f"promote and rollback; drop them with `git checkout HEAD -- {relative}` and run again")


# --- reading: status, versions, drift repair -------------------------------------------


def version_columns(prompt_file: Path, history: list[Any]) -> dict[str, dict[int, str]]:
    """Extra `promptops versions` columns: the channels on each version (matched by commit, else by
    identical content) and its latest eval of a whole split (a `--limit` smoke test does not count)."""
    from promptops import tracking

    on_version: dict[int, list[str]] = {}
    by_label = {version.label: version.number for version in history}
    for channel, pointer in pointers(prompt_file.stem).items():
        label = versions.version_label(prompt_file, pointer.commit, history)
        if label in by_label:
            on_version.setdefault(by_label[label], []).append(channel)
    evals = tracking.last_evals(prompt_file.stem, full_split=True)
    metrics: dict[int, str] = {}
    invalid: dict[int, str] = {}
    for version in history:
        try:
            content_hash = versions.load_prompt_at(prompt_file, version.commit).content_hash
        except PromptopsError as exc:  # a version committed with a mistake stays in history: show it, do not fail on it
            invalid[version.number] = f"invalid: {exc}"
            continue
        found = evals.get(content_hash)
        if found and found.get("score") is not None:
            metrics[version.number] = f"{found['metric']} {found['score']:.3f} ({found['split']}, n={found['n']})"
    columns = {"channels": {n: ", ".join(c) for n, c in on_version.items()}, "last full eval": metrics}
    if invalid:
        columns["problem"] = invalid
    return columns


@dataclass(frozen=True)
class PromptStatus:
    prompt: str
    channels: dict[str, str]  # channel → label
    latest_version: Optional[int]
    working_file_changed: Optional[bool]  # the file differs from the production version; None: no production yet
    last_eval: Optional[dict[str, Any]]  # the latest eval of the working file on a whole split (not a --limit run)
    error: Optional[str] = None  # why this prompt could not be read (file:line and what is wrong); the other fields are empty


@dataclass(frozen=True)
class StatusReport:
    """`promptops status`: a row per prompt, and every inconsistency seen, one sentence each.

    Iterating over it gives the rows. A problem is something that will bite later if nobody acts: git
    and the registry disagree, a move was interrupted, the channels file has a conflict or edits, a
    prompt serves channels but its file is gone, the tracking store cannot be read."""

    prompts: tuple[PromptStatus, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems and not any(row.error for row in self.prompts)

    def __iter__(self) -> Iterator[PromptStatus]:
        return iter(self.prompts)

    def __len__(self) -> int:
        return len(self.prompts)

    def summary(self) -> dict[str, Any]:
        return {"prompts": [dataclasses.asdict(row) for row in self.prompts], "problems": list(self.problems)}


def status() -> StatusReport:
    """Every prompt with its channel versions, whether its file moved past production, and its last full eval,
    and every inconsistency between git, the registry and the work tree that can be seen from here.

    A prompt whose files cannot be read (a broken YAML, a damaged channels file) is a row with its
    `error`, so one bad file does not hide the others.
    """
    from promptops import tracking
    from promptops.artifact import list_prompts
    from promptops.errors import RepositoryError, TrackingError

    root = find_project_root()
    repo = versions.open_repo(root / "prompts")
    problems: list[str] = []
    store_error: list[str] = []  # the tracking store's problem, once: after it, no further MLflow calls

    def from_store(function, *args, **kwargs):
        if store_error:
            return None
        try:
            return function(*args, **kwargs)
        except TrackingError as exc:
            store_error.append(str(exc))
            return None

    interrupted = read_interrupted_move(repo)
    if interrupted is not None:
        problems.append(interrupted.message)
    rows = []
    listed = set()
    for listing in list_prompts(root):
        listed.add(listing.name)
        error = listing.error
        if listing.prompt is not None:
            try:
                rows.append(_prompt_status(listing.path, listing.prompt, from_store))
                continue
            except RepositoryError:
                raise  # no repository: every row would say the same, so say it once
            except PromptopsError as exc:  # a damaged channels file, a committed version that does not parse
                error = str(exc)
        rows.append(PromptStatus(listing.name, {}, None, None, None, error=error))
    channel_names = sorted(path.stem for path in (root / "prompts" / "channels").glob("*.yaml"))
    for name in channel_names:
        path = channels_file(name, root)
        relative = versions.relative_path(repo, path)
        if versions.is_conflicted(repo, path):
            problems.append(f"{relative} has an unresolved merge conflict: keep one side (`git checkout --ours -- {relative}` "
                            f"or `--theirs`), then `git add` and commit; promote and rollback refuse until then")
        elif versions.has_uncommitted_changes(path) and (interrupted is None or interrupted.prompt != name):
            problems.append(f"{relative} has uncommitted changes, which are never served: drop them with "
                            f"`git checkout HEAD -- {relative}` (channels move only through promote and rollback)")
        try:
            found = pointers(name, root)
        except PromptopsError as exc:
            problems.append(str(exc))
            continue
        if name not in listed and found:
            served = ", ".join(f"{channel} {pointer.label}" for channel, pointer in found.items())
            problems.append(f"prompts/{name}.yaml does not exist but {relative} still serves {served}: restore the file "
                            f"(`git checkout HEAD -- prompts/{name}.yaml`), or commit its deletion and roll the channels back")
            continue
        if name in listed and not store_error:
            for drift in from_store(sync, [name], repair=False) or ():
                problems.append(f"{name} {drift.channel}: git serves {drift.git_label or 'nothing'} but {drift.problem}; "
                                "run `promptops sync` to make the registry agree with git")
    if store_error:
        problems.append(store_error[0])
    else:
        for row in rows:
            pending = from_store(tracking.pending_move, row.prompt) if row.channels else None
            if pending and (interrupted is None or interrupted.prompt != row.prompt):
                problems.append(f"{row.prompt}: the registry is tagged with a move that did not finish ({pending}): "
                                "run `promptops sync`")
    return StatusReport(tuple(rows), tuple(problems))


def _prompt_status(prompt_file: Path, prompt: Prompt, from_store: Any) -> PromptStatus:
    from promptops import tracking

    name = prompt_file.stem
    history = versions.prompt_versions(prompt_file)
    found = pointers(name)
    labels = {channel: display_label(prompt_file, pointer.commit, pointer.label, history) for channel, pointer in found.items()}
    production = found.get("production")
    changed = None if production is None else (
        versions.has_uncommitted_changes(prompt_file)
        or versions.version_label(prompt_file, production.commit, history) != (history[-1].label if history else None))
    evals = from_store(tracking.last_evals, name, full_split=True) or {}
    return PromptStatus(name, labels, history[-1].number if history else None, changed, evals.get(prompt.content_hash))


@dataclass(frozen=True)
class Drift:
    prompt: str
    channel: str
    git_label: Optional[str]
    registry_label: Optional[str]
    repaired: bool
    problem: str = ""  # what the registry got wrong, in words


def sync(names: Optional[list[str]] = None, *, repair: bool = True) -> list[Drift]:
    """Registry aliases that disagree with git's committed channels; with `repair`, make them agree.

    Git wins: an alias moved or deleted by hand is set back, and a registry version deleted by
    hand is registered again from the file at the channel's commit, with the tags it had. A
    move interrupted by a killed process is finished (or dropped) first, under the lock."""
    from promptops import tracking

    root = find_project_root()
    tracking.check_store()
    drifts = []
    if repair:
        repo = versions.open_repo(root / "prompts")
        with channel_lock(repo):
            interrupted = finish_interrupted_move(repo)
        if interrupted is not None:
            git_label = interrupted.label if interrupted.outcome == "finished" else interrupted.serving
            drifts.append(Drift(interrupted.prompt, interrupted.channel, git_label, None, interrupted.outcome != "reverted",
                                interrupted.message))
    given = bool(names)
    names = names or sorted(set(p.stem for p in (root / "prompts" / "channels").glob("*.yaml")))
    for name in names:
        # A channels file outlives a deleted prompt file: git still has the file at the channel's commit.
        prompt_file = resolve_prompt_path(name) if given else root / "prompts" / f"{name}.yaml"
        state = read_channels(name)
        found = pointers_in(state)
        aliases = tracking.registry_aliases(name)
        registered = tracking.registry_versions(name)
        for channel in CHANNELS:
            want = found.get(channel)
            have = aliases.get(channel)
            have_tags = registered.get(have, {}) if have else {}
            if (want and have_tags.get("git_commit") == want.commit) or (not want and not have):
                continue
            want_label = resolve(prompt_file, channel).label if want else None
            have_label = have_tags.get("prompt_version")
            if not want:
                problem = f"the registry has a {channel} alias (registry version {have}) but git has no {channel} version"
            elif have:
                problem = f"the {channel} alias points at registry version {have} ({have_label or 'not from promptops'}), not {want_label}"
            elif any(tags.get("git_commit") == want.commit for tags in registered.values()):
                problem = f"the {channel} alias is missing"
            else:
                problem = f"the registry version holding {want_label} was deleted, and the {channel} alias with it"
            repaired = False
            if repair:
                if want:
                    prompt = versions.load_prompt_at(prompt_file, want.commit)
                    registry_version = tracking.register_prompt_version(
                        prompt, git_commit=want.commit, label=want.label, metrics=_first_move_metrics(state, want.commit))
                    tracking.set_alias(name, channel, registry_version)
                else:
                    tracking.set_alias(name, channel, None)
                repaired = True
            drifts.append(Drift(name, channel, want_label, have_label, repaired, problem))
    return drifts


def _first_move_metrics(state: dict[str, Any], commit: str) -> dict[str, float]:
    """The gate numbers a version was first registered with, so a re-registered version carries the same tags."""
    for entry in state["history"]:
        if entry.get("commit") == commit:
            candidate = (entry.get("metrics") or {}).get("candidate") or {}
            return {key: value for key, value in candidate.items() if isinstance(value, (int, float))}
    return {}


# --- helpers -------------------------------------------------------------------------


def _channels_yaml(data: dict[str, Any]) -> str:
    header = "# Managed by `promptops promote` and `promptops rollback`; edit through them, not by hand.\n"
    ordered = {key: data[key] for key in CHANNELS if data.get(key)}
    ordered["history"] = data.get("history", [])
    return header + yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, width=100)


def _check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise PromptopsError(f"unknown channel {channel!r}: use one of {', '.join(CHANNELS)}")


def _who(repo: Any) -> str:
    """The author git writes into the move's commit (GIT_AUTHOR_NAME/EMAIL, else the config), as the audit's `by`."""
    return versions.author_identity(repo) or getpass.getuser()


def _plain(value: Any) -> Any:
    """Six significant digits, as the registry tags have them: a cost of $0.0000118 must not become $0.000012."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(find_project_root().resolve()))
    except ValueError:
        return str(path)


def _quietly(function, *args, **kwargs) -> None:
    """Undo steps must all be tried even if one fails; the original error is what the user sees."""
    try:
        function(*args, **kwargs)
    except Exception:
        pass


def _unmoved(name: str, channel: str, action: str, current: Pointer, target: ResolvedVersion) -> ChannelMove:
    """The answer when the channel already serves the version asked for: nothing to do, nothing done."""
    return ChannelMove(name, channel, action, target.label, target.label, current.commit, target.commit, None, None, None)
