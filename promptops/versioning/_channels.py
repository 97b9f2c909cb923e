"""Channels: which commit `production`, `staging` and `candidate` serve, read from what is committed.

Each prompt's channels live in `prompts/channels/NAME.yaml`, a committed file. A channel names
the commit that was gated, never a version number: numbers are recounted from history and
change when a branch is merged, squashed or rebased; a commit and its content do not (the
annotated tag `prompts/NAME/vN` keeps it reachable). `vN` is a label for people and a way to
type a ref.

Everything that serves or reads a channel reads the file as committed at HEAD, never the work
tree, so a move that did not finish, or an edit by hand, is never served.

This module only reads. Moving a channel is `promotion`'s (a lock, the gate, one commit), and
`promptops.load` needs only this module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from promptops.artifact import Prompt, find_project_root, resolve_prompt_path
from promptops.errors import PromptopsError, RepositoryError, UnknownPromptError, UnknownVersionError
from promptops.artifact import safe_load

CHANNELS = ("production", "staging", "candidate")


def channels_file(name: str, root: Optional[Path] = None) -> Path:
    return (root or find_project_root()) / "prompts" / "channels" / f"{name}.yaml"


def parse_channels(text: Optional[str], source: str) -> dict[str, Any]:
    """The channels file's content; a channel without a commit is refused, naming the file."""
    if not text:
        return {"history": []}
    try:
        data = safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise PromptopsError(f"{source}: not valid YAML ({str(exc).splitlines()[0]}); restore it with git checkout") from None
    if not isinstance(data, dict):
        raise PromptopsError(f"{source}: expected a mapping of channels; restore it with git checkout")
    for channel in CHANNELS:
        entry = data.get(channel)
        if entry is not None and not (isinstance(entry, dict) and isinstance(entry.get("commit"), str)):
            raise PromptopsError(f"{source}: channel {channel!r} has no commit; restore the file with git checkout")
    data.setdefault("history", [])
    return data


def read_channels(name: str, root: Optional[Path] = None) -> dict[str, Any]:
    """The channels as committed at HEAD (`git show HEAD:prompts/channels/NAME.yaml`)."""
    from promptops.versioning import _git as versions

    path = channels_file(name, root)
    repo = versions.open_repo(path)
    relative = versions.relative_path(repo, path)
    return parse_channels(versions.read_committed(repo, relative), f"{relative}@HEAD")


@dataclass(frozen=True)
class Pointer:
    """Where a channel points: the gated commit, and the label it had when it moved there."""

    channel: str
    commit: str
    label: str  # vN at the time of the move; display only
    content_hash: Optional[str] = None


def pointers(name: str, root: Optional[Path] = None) -> dict[str, Pointer]:
    """Channel → pointer, for the channels that point somewhere, as committed."""
    return pointers_in(read_channels(name, root))


def pointers_in(state: dict[str, Any]) -> dict[str, Pointer]:
    found = {}
    for channel in CHANNELS:
        entry = state.get(channel)
        if entry:
            label = entry.get("label") or (f"v{entry['version']}" if entry.get("version") is not None else entry["commit"][:8])
            found[channel] = Pointer(channel, entry["commit"], label, entry.get("content_hash"))
    return found


@dataclass(frozen=True)
class ResolvedVersion:
    """A ref resolved to the commit whose content it names."""

    commit: str
    label: str  # v3; or `v2 (abc12345, not on this branch)` when history no longer has it
    channel: Optional[str] = None

    @property
    def short(self) -> str:
        return self.commit[:8]


def resolve(prompt_file: Path, ref: str) -> ResolvedVersion:
    """`production` (a channel), `v3`, or a commit, tag or branch, to a commit of the prompt file."""
    from promptops.versioning import _git as versions

    name = prompt_file.stem
    if ref in CHANNELS:
        pointer = pointers(name, prompt_file.parent.parent).get(ref)
        if pointer is None:
            raise PromptopsError(f"{name} has no {ref} version yet: promote one first (promptops promote {name})")
        return ResolvedVersion(pointer.commit, display_label(prompt_file, pointer.commit, pointer.label), ref)
    try:
        version = versions.resolve_version(prompt_file, ref)
        return ResolvedVersion(version.commit, version.label)
    except UnknownVersionError:
        # A commit that is not on this branch (a channel's, after a squash) still names content.
        repo = versions.open_repo(prompt_file)
        commit = versions.resolve_commit(repo, ref)
        if commit is None or versions.blob_id(repo, commit, versions.relative_path(repo, prompt_file)) is None:
            raise
        return ResolvedVersion(commit, display_label(prompt_file, commit, commit[:8]))


def display_label(prompt_file: Path, commit: str, recorded: str, history: Optional[list[Any]] = None) -> str:
    """The commit's `vN` on this branch, else the label it was recorded with, marked; `history` saves a git log."""
    from promptops.versioning import _git as versions

    label = versions.version_label(prompt_file, commit, history)
    return label if label else f"{recorded} ({commit[:8]}, not on this branch)"


def previous_commit(name: str, channel: str = "production", root: Optional[Path] = None) -> Optional[str]:
    """The commit the channel served before its current one (rollback's default target), or None."""
    moves = [entry for entry in read_channels(name, root)["history"] if entry.get("channel") == channel]
    if not moves:
        return None
    last = moves[-1]
    if last.get("from_commit"):
        return last["from_commit"]
    if last.get("from") is None:
        return None
    # Files written before channels named commits: the earlier move to that number has the commit.
    earlier = [entry for entry in moves[:-1] if entry.get("to") == last["from"] and entry.get("commit")]
    return earlier[-1]["commit"] if earlier else None


# --- serving --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedVersion:
    """A prompt as loaded for serving, with the names a trace needs to find it again."""

    prompt: Prompt
    reference: str
    label: str  # v3, or "working file"
    commit: Optional[str]  # None for a working file with uncommitted edits
    channel: Optional[str]


def served_version(reference: str) -> ServedVersion:
    """`NAME` (the working file), `NAME@vN`, `NAME@<commit>` or `NAME@<channel>`.

    A channel comes from git (its commit, as committed at HEAD); from MLflow's Prompt Registry
    when there is no repository, or when the repository lacks the gated commit."""
    from promptops.versioning import _git as versions
    from promptops.artifact import load_prompt_file

    name, _, ref = reference.partition("@")
    channel = ref if ref in CHANNELS else None
    try:
        prompt_file = resolve_prompt_path(name)
        if not ref:
            revision = versions.file_revision(prompt_file)
            return ServedVersion(load_prompt_file(prompt_file), reference, "working file",
                                 None if revision.dirty else revision.commit, None)
        resolved = resolve(prompt_file, ref)
        repo = versions.open_repo(prompt_file)
        if not versions.has_commit(repo, resolved.commit):
            if channel is None:
                raise UnknownVersionError(f"{reference} names commit {resolved.short}, which this repository does not have")
            return _from_registry(name, channel, reference, expected_commit=resolved.commit)
        prompt = versions.load_prompt_at(prompt_file, resolved.commit)
        return ServedVersion(prompt, reference, resolved.label, resolved.commit, channel)
    except (UnknownPromptError, RepositoryError):
        if channel is None:
            raise
    return _from_registry(name, channel, reference)


def _from_registry(name: str, channel: str, reference: str, *, expected_commit: Optional[str] = None) -> ServedVersion:
    from promptops import tracking
    from promptops.artifact import parse_prompt

    text, tags = tracking.load_registered_text(name, channel)
    pending = tracking.pending_move(name)
    if pending:  # git moved (or is moving) this prompt's channel and the alias has not followed yet
        logging.getLogger("promptops").warning(
            "serving %s from the MLflow Prompt Registry (registry version %s), which may be behind git: a %s has not "
            "finished; run `promptops sync` where the repository is", reference, tags.get("prompt_version", "?"), pending)
    if expected_commit and tags.get("git_commit") != expected_commit:
        raise UnknownVersionError(
            f"{reference} names commit {expected_commit[:8]}, which this repository does not have (git fetch --tags), "
            f"and the registry's {channel} alias holds {str(tags.get('git_commit', 'another commit'))[:8]}")
    prompt = parse_prompt(text, f"prompts:/{name}@{channel} (registry version {tags.get('prompt_version', '?')})")
    return ServedVersion(prompt, reference, tags.get("prompt_version", "registry"), tags.get("git_commit"), channel)


def prompt_at(reference: str) -> Prompt:
    """The prompt `reference` names (see `served_version`)."""
    return served_version(reference).prompt
