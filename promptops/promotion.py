"""Channels, the eval gate, promote and rollback: git and MLflow's Prompt Registry moved together.

Git is the source of truth. Each prompt's channels live in a committed file,
`prompts/channels/NAME.yaml`: which version `production`, `staging` and `candidate` serve, and
the history of every move (who, when, from, to, metrics, reason). A committed file, rather
than movable refs, because it travels with a normal push, shows up in review and its own git
log is the audit trail. Each promoted version also gets an annotated tag `prompts/NAME/vN`.

A move is one step: the channels commit, the tag, the registry version and its alias, and an
audit run either all happen or are all undone. One process moves channels at a time (a lock
in the git directory).
"""

from __future__ import annotations

import dataclasses
import fcntl
import getpass
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

import yaml

from promptops.artifact import Prompt, atomic_write_text, find_project_root, resolve_prompt_path
from promptops.errors import PromptopsError

CHANNELS = ("production", "staging", "candidate")
DEFAULT_LOCK_TIMEOUT_S = 120.0


class GateFailedError(PromptopsError):
    """The candidate scored worse than the channel's current version by more than the tolerance."""


class ChannelBusyError(PromptopsError):
    """Another process is moving channels."""


@dataclass(frozen=True)
class GateResult:
    metric: str
    candidate_score: float
    current_score: Optional[float]
    candidate_cost_usd: Optional[float]
    current_cost_usd: Optional[float]
    tolerance: float
    max_cost_usd: Optional[float]
    n: int
    passed: bool
    verdict: str


@dataclass(frozen=True)
class ChannelMove:
    """What a promote or rollback did."""

    prompt: str
    channel: str
    action: str
    from_version: Optional[int]
    to_version: int
    commit: Optional[str]
    registry_version: Optional[int]
    audit_run_id: Optional[str]
    gate: Optional[GateResult] = None


# --- the channels file -----------------------------------------------------------------


def channels_file(name: str, root: Optional[Path] = None) -> Path:
    return (root or find_project_root()) / "prompts" / "channels" / f"{name}.yaml"


def read_channels(name: str, root: Optional[Path] = None) -> dict[str, Any]:
    path = channels_file(name, root)
    if not path.exists():
        return {"history": []}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    data.setdefault("history", [])
    return data


def _channels_yaml(data: dict[str, Any]) -> str:
    header = "# Managed by `promptops promote` and `promptops rollback`; edit through them, not by hand.\n"
    ordered = {key: data[key] for key in CHANNELS if data.get(key)}
    ordered["history"] = data.get("history", [])
    return header + yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, width=100)


def channel_versions(name: str, root: Optional[Path] = None) -> dict[str, int]:
    """Channel → version number, for the channels that point somewhere."""
    data = read_channels(name, root)
    return {channel: int(data[channel]["version"]) for channel in CHANNELS if data.get(channel)}


# --- the lock ------------------------------------------------------------------------


@contextmanager
def channel_lock(repo: Any, timeout_s: Optional[float] = None) -> Iterator[None]:
    """One channel move at a time per repository; a second process waits, then refuses.

    flock, not a lock file that exists or not: the kernel drops the lock when its holder dies,
    so a crashed promote never leaves the channels locked."""
    timeout_s = _lock_timeout_s() if timeout_s is None else timeout_s
    path = Path(repo.git_dir) / "promptops.lock"
    with open(path, "a+") as handle:
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
    data: Optional[str | Path] = None,
    split: str = "test",
    limit: Optional[int] = None,
    tolerance: float = 0.0,
    max_cost_usd: Optional[float] = None,
    commits: tuple[Optional[str], Optional[str]] = (None, None),
) -> GateResult:
    """Both versions on the same examples; the candidate passes unless it is measurably worse.

    Both evals are logged as ordinary eval runs (with their git commits), so `status` and
    `versions` show what the gate measured."""
    from promptops import tracking
    from promptops.data import load_dataset
    from promptops.evaluation import evaluate

    dataset = load_dataset(candidate, data, split)
    metric = candidate.eval.metric
    candidate_result = evaluate(candidate, dataset=dataset, split=split, limit=limit, metric=metric)
    current_result = evaluate(current, dataset=dataset, split=split, limit=limit, metric=candidate_result.metric) if current else None
    for prompt, result, commit in ((candidate, candidate_result, commits[0]), (current, current_result, commits[1])):
        if prompt is not None and result is not None:
            tracking.log_eval(result, prompt, git_commit=commit)
    reasons = []
    if current_result is not None and candidate_result.score < current_result.score - tolerance:
        reasons.append(
            f"{candidate_result.metric} {candidate_result.score:.4f} is below the current {current_result.score:.4f} by more than the tolerance {tolerance:g}"
        )
    if max_cost_usd is not None and candidate_result.cost_usd is not None and candidate_result.cost_usd > max_cost_usd:
        reasons.append(f"cost ${candidate_result.cost_usd:.6f} is above the limit ${max_cost_usd:.6f}")
    scores = f"{candidate_result.metric} candidate {candidate_result.score:.4f} vs current " + (
        f"{current_result.score:.4f}" if current_result else "none"
    ) + f", cost ${candidate_result.cost_usd or 0:.6f} vs ${(current_result.cost_usd or 0) if current_result else 0:.6f}"
    verdict = scores + (": " + "; ".join(reasons) if reasons else "")
    return GateResult(
        metric=candidate_result.metric,
        candidate_score=candidate_result.score,
        current_score=current_result.score if current_result else None,
        candidate_cost_usd=candidate_result.cost_usd,
        current_cost_usd=current_result.cost_usd if current_result else None,
        tolerance=tolerance,
        max_cost_usd=max_cost_usd,
        n=candidate_result.n,
        passed=not reasons,
        verdict=verdict,
    )


# --- promote and rollback -------------------------------------------------------------


def promote(
    name: str,
    *,
    version: Optional[str] = None,
    channel: str = "production",
    data: Optional[str | Path] = None,
    split: str = "test",
    limit: Optional[int] = None,
    tolerance: float = 0.0,
    max_cost_usd: Optional[float] = None,
    force: bool = False,
    reason: Optional[str] = None,
) -> ChannelMove:
    """Move `channel` to a version of the prompt, through the eval gate."""
    from promptops import versions

    _check_channel(channel)
    if force and not reason:
        raise PromptopsError("--force needs --reason: say why the gate is overridden, it goes into the audit trail")
    prompt_file = resolve_prompt_path(name)
    repo = versions.open_repo(prompt_file)
    if version is None and versions.has_uncommitted_changes(prompt_file):
        raise PromptopsError(
            f"{prompt_file.name} has uncommitted changes: commit them (they become the next version) or name a --version"
        )
    with channel_lock(repo):
        target = resolve_ref(prompt_file, version or "HEAD")
        state = read_channels(name)
        current_number = _served(state, channel)
        if current_number == target.number:
            return _unmoved(name, channel, "promote", state, target.number)
        candidate = versions.load_prompt_at(prompt_file, target.commit)
        current = versions.load_prompt_at(prompt_file, state[channel]["commit"]) if current_number else None
        gate = run_gate(candidate, current, data=data, split=split, limit=limit, tolerance=tolerance, max_cost_usd=max_cost_usd,
                        commits=(target.commit, state[channel]["commit"] if current_number else None))
        if not gate.passed and not force:
            raise GateFailedError(f"gate failed for {name} {target.label} → {channel}: {gate.verdict}; nothing was changed")
        metrics = {"candidate": {gate.metric: gate.candidate_score, "cost_usd": gate.candidate_cost_usd, "n": gate.n}}
        if gate.current_score is not None:
            metrics["current"] = {gate.metric: gate.current_score, "cost_usd": gate.current_cost_usd, "n": gate.n}
        move = _move_channel(repo, prompt_file, candidate, target, channel, "promote", current_number, metrics,
                             reason or ("gate overridden" if not gate.passed else None))
        return dataclasses.replace(move, gate=gate)


def rollback(name: str, *, channel: str = "production", to: Optional[str] = None, reason: Optional[str] = None) -> ChannelMove:
    """Move `channel` back to the version it served before its last move (or to `to`); no gate."""
    from promptops import versions

    _check_channel(channel)
    prompt_file = resolve_prompt_path(name)
    repo = versions.open_repo(prompt_file)
    with channel_lock(repo):
        state = read_channels(name)
        if not state.get(channel):
            raise PromptopsError(f"{name} has no {channel} version to roll back")
        current_number = int(state[channel]["version"])
        if to is None:
            to = previous_version(name, channel)
            if to is None:
                raise PromptopsError(f"{name} {channel} has no earlier version to roll back to")
        target = resolve_ref(prompt_file, to)
        if target.number == current_number:
            raise PromptopsError(f"{name} {channel} already serves {target.label}")
        prompt = versions.load_prompt_at(prompt_file, target.commit)
        return _move_channel(repo, prompt_file, prompt, target, channel, "rollback", current_number, {}, reason)


def _move_channel(repo, prompt_file, prompt, target, channel, action, from_number, metrics, reason) -> ChannelMove:
    """Git commit + tag + registry alias + audit run, all or nothing."""
    from promptops import tracking, versions

    name = prompt.name
    path = channels_file(name)
    old_text = path.read_text(encoding="utf-8") if path.exists() else None
    head_before = repo.head.commit.hexsha
    tag_name = f"prompts/{name}/{target.label}"
    tag_existed = tag_name in [t.name for t in repo.tags]
    previous_alias = None
    alias_moved = committed = False
    entry = {
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "by": _who(repo),
        "action": action,
        "channel": channel,
        "from": from_number,
        "to": target.number,
        "commit": target.commit,
        "reason": reason,
        "metrics": _plain(metrics),
    }
    try:
        flat_metrics = {k: v for k, v in (metrics.get("candidate") or {}).items() if isinstance(v, (int, float))}
        registry_version = tracking.register_prompt_version(prompt, git_commit=target.commit, label=target.label, metrics=flat_metrics)
        state = read_channels(name)
        state[channel] = {"version": target.number, "commit": target.commit, "registry_version": registry_version}
        state["history"].append({**entry, "registry_version": registry_version})
        atomic_write_text(path, _channels_yaml(state))
        commit = versions.commit_paths(repo, [path], f"{action} {name} {target.label} to {channel}" + (f": {reason}" if reason else ""))
        committed = True
        versions.tag(repo, tag_name, target.commit, f"{name} {target.label}, promoted to {channel}")
        previous_alias = tracking.registry_aliases(name).get(channel)
        tracking.set_alias(name, channel, registry_version)
        alias_moved = True
        audit_run_id = tracking.log_audit(name, {**entry, "registry_version": registry_version, "git_commit": commit})
    except BaseException:
        if alias_moved:
            _quietly(tracking.set_alias, name, channel, previous_alias)
        if committed:
            _quietly(versions.undo_commit, repo, head_before, [path])
        if not tag_existed:
            _quietly(versions.delete_tag, repo, tag_name)
        if old_text is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write_text(path, old_text)
        raise
    return ChannelMove(name, channel, action, from_number, target.number, commit, registry_version, audit_run_id)


# --- reading a channel back: runtime loading, status and drift repair -------------------


def prompt_at(reference: str) -> Prompt:
    """`NAME` (the working file), `NAME@vN`, `NAME@<commit>` or `NAME@<channel>`, from git;
    a channel comes from MLflow's Prompt Registry when the git repository is not available."""
    return served_version(reference).prompt


@dataclass(frozen=True)
class ServedVersion:
    """A prompt as loaded for serving, with the names a trace needs to find it again."""

    prompt: Prompt
    reference: str
    label: str  # v3, or "working file"
    commit: Optional[str]  # None for a working file with uncommitted edits
    channel: Optional[str]


def served_version(reference: str) -> ServedVersion:
    """Like `prompt_at`, keeping which version and commit the reference resolved to."""
    from promptops import versions
    from promptops.artifact import load_prompt_file, parse_prompt
    from promptops.errors import RepositoryError, UnknownPromptError

    name, _, ref = reference.partition("@")
    channel = ref if ref in CHANNELS else None
    try:
        prompt_file = resolve_prompt_path(name)
        if not ref:
            revision = versions.file_revision(prompt_file)
            return ServedVersion(load_prompt_file(prompt_file), reference, "working file", None if revision.dirty else revision.commit, None)
        version = resolve_ref(prompt_file, ref)
        return ServedVersion(versions.load_prompt_at(prompt_file, version.commit), reference, version.label, version.commit, channel)
    except (UnknownPromptError, RepositoryError):
        if channel is None:
            raise
    from promptops import tracking

    text, tags = tracking.load_registered_text(name, ref)
    prompt = parse_prompt(text, f"prompts:/{name}@{ref} (registry version {tags.get('prompt_version', '?')})")
    return ServedVersion(prompt, reference, tags.get("prompt_version", "registry"), tags.get("git_commit"), channel)


def previous_version(name: str, channel: str = "production") -> Optional[str]:
    """`vN` the channel served before its current version (the rollback target), or None."""
    moves = [entry for entry in read_channels(name)["history"] if entry["channel"] == channel]
    previous = moves[-1].get("from") if moves else None
    return f"v{previous}" if previous is not None else None


def version_columns(prompt_file: Path, history: list[Any]) -> dict[str, dict[int, str]]:
    """Extra `promptops versions` columns: the channels on each version and its latest eval."""
    from promptops import tracking, versions

    on_version: dict[int, list[str]] = {}
    for channel, number in channel_versions(prompt_file.stem).items():
        on_version.setdefault(number, []).append(channel)
    evals = tracking.last_evals(prompt_file.stem)
    metrics: dict[int, str] = {}
    for version in history:
        found = evals.get(versions.load_prompt_at(prompt_file, version.commit).content_hash)
        if found and found.get("score") is not None:
            metrics[version.number] = f"{found['metric']} {found['score']:.3f} ({found['split']}, n={found['n']})"
    return {"channels": {n: ", ".join(c) for n, c in on_version.items()}, "last eval": metrics}


@dataclass(frozen=True)
class PromptStatus:
    prompt: str
    channels: dict[str, int]
    latest_version: Optional[int]
    working_file_changed: bool  # the file differs from the production version (or there is none)
    last_eval: Optional[dict[str, Any]]


def status() -> list[PromptStatus]:
    """Every prompt with its channel versions, whether its file moved past production, and its last eval."""
    from promptops import tracking, versions
    from promptops.artifact import load_prompt_file

    root = find_project_root()
    rows = []
    for prompt_file in sorted((root / "prompts").glob("*.yaml")):
        name = prompt_file.stem
        history = versions.prompt_versions(prompt_file)
        channels = channel_versions(name)
        production = channels.get("production")
        changed = production is None or versions.has_uncommitted_changes(prompt_file) or production != (history[-1].number if history else None)
        evals = tracking.last_evals(name)
        rows.append(PromptStatus(name, channels, history[-1].number if history else None, changed,
                                 evals.get(load_prompt_file(prompt_file).content_hash)))
    return rows


@dataclass(frozen=True)
class Drift:
    prompt: str
    channel: str
    git_version: Optional[int]
    registry_label: Optional[str]
    repaired: bool
    problem: str = ""  # what the registry got wrong, in words


def sync(names: Optional[list[str]] = None, *, repair: bool = True) -> list[Drift]:
    """Registry aliases that disagree with git's channels; with `repair`, make them agree.

    Git wins: an alias moved or deleted by hand is set back, and a registry version deleted by
    hand is registered again from the file at the channel's commit, with the tags it had."""
    from promptops import tracking, versions

    root = find_project_root()
    names = names or sorted(p.stem for p in (root / "prompts" / "channels").glob("*.yaml"))
    drifts = []
    for name in names:
        prompt_file = resolve_prompt_path(name)
        state = read_channels(name)
        aliases = tracking.registry_aliases(name)
        registered = tracking.registry_versions(name)
        for channel in CHANNELS:
            want = state.get(channel)
            have = aliases.get(channel)
            have_tags = registered.get(have, {}) if have else {}
            if (want and have_tags.get("git_commit") == want["commit"]) or (not want and not have):
                continue
            want_label = f"v{want['version']}" if want else None
            have_label = have_tags.get("prompt_version")
            if not want:
                problem = f"the registry has a {channel} alias (registry version {have}) but git has no {channel} version"
            elif have:
                problem = f"the {channel} alias points at registry version {have} ({have_label or 'not from promptops'}), not {want_label}"
            elif any(tags.get("git_commit") == want["commit"] for tags in registered.values()):
                problem = f"the {channel} alias is missing"
            else:
                problem = f"the registry version holding {want_label} was deleted, and the {channel} alias with it"
            repaired = False
            if repair:
                if want:
                    prompt = versions.load_prompt_at(prompt_file, want["commit"])
                    registry_version = tracking.register_prompt_version(
                        prompt, git_commit=want["commit"], label=want_label, metrics=_first_move_metrics(state, want["commit"]))
                    tracking.set_alias(name, channel, registry_version)
                else:
                    tracking.set_alias(name, channel, None)
                repaired = True
            drifts.append(Drift(name, channel, want["version"] if want else None, have_label, repaired, problem))
    return drifts


def _first_move_metrics(state: dict[str, Any], commit: str) -> dict[str, float]:
    """The gate numbers a version was first registered with, so a re-registered version carries the same tags."""
    for entry in state["history"]:
        if entry.get("commit") == commit:
            candidate = (entry.get("metrics") or {}).get("candidate") or {}
            return {key: value for key, value in candidate.items() if isinstance(value, (int, float))}
    return {}


def resolve_ref(prompt_file: Path, ref: str) -> Any:
    """A version by `vN`, commit-ish or channel name."""
    from promptops import versions

    if ref in CHANNELS:
        state = read_channels(prompt_file.stem)
        if not state.get(ref):
            raise PromptopsError(f"{prompt_file.stem} has no {ref} version yet")
        ref = f"v{state[ref]['version']}"
    return versions.resolve_version(prompt_file, ref)


def _check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise PromptopsError(f"unknown channel {channel!r}: use one of {', '.join(CHANNELS)}")


def _who(repo: Any) -> str:
    try:
        reader = repo.config_reader()
        return f"{reader.get_value('user', 'name')} <{reader.get_value('user', 'email')}>"
    except Exception:
        return getpass.getuser()


def _plain(value: Any) -> Any:
    """Six significant digits, as the registry tags have them: a cost of $0.0000118 must not become $0.000012."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def _quietly(function, *args) -> None:
    """Undo steps must all be tried even if one fails; the original error is what the user sees."""
    try:
        function(*args)
    except Exception:
        pass


def assign_channel(name: str, version: str, channel: str, *, action: str, metrics: dict[str, Any], reason: str) -> ChannelMove:
    """Point `channel` at `version` without a gate, for steps that measured it themselves (the optimizer's `candidate`).

    Same lock, atomicity and audit as promote; `production` always goes through `promote`'s gate.
    """
    from promptops import versions

    _check_channel(channel)
    if channel == "production":
        raise PromptopsError("production is moved only by promote, through the eval gate")
    prompt_file = resolve_prompt_path(name)
    repo = versions.open_repo(prompt_file)
    with channel_lock(repo):
        target = resolve_ref(prompt_file, version)
        state = read_channels(name)
        current_number = _served(state, channel)
        if current_number == target.number:
            return _unmoved(name, channel, action, state, target.number)
        prompt = versions.load_prompt_at(prompt_file, target.commit)
        return _move_channel(repo, prompt_file, prompt, target, channel, action, current_number, metrics, reason)


def _served(state: dict[str, Any], channel: str) -> Optional[int]:
    """The version number the channel serves, None before its first move."""
    return int(state[channel]["version"]) if state.get(channel) else None


def _unmoved(name: str, channel: str, action: str, state: dict[str, Any], number: int) -> ChannelMove:
    """The answer when the channel already serves the version asked for: nothing to do, nothing done."""
    return ChannelMove(name, channel, action, number, number, None, state[channel].get("registry_version"), None)
