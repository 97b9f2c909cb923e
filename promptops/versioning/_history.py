"""A prompt's history as people read it: its versions (with channel and eval columns), its file at a
version, and what changed between two refs. Each returns data; `reports.tables` draws it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from promptops._text import read_utf8
from promptops.artifact import PromptChange, diff_prompts, resolve_prompt_path
from promptops.errors import PromptFileError
from promptops.versioning._channels import ResolvedVersion, resolve, served_version
from promptops.versioning._git import PromptVersion, parse_prompt_ref, prompt_versions, read_text_at
from promptops.versioning._promotion import version_columns


@dataclass(frozen=True)
class VersionHistory:
    """Every commit that changed the prompt's file, v1 the oldest, with the columns `versions` shows beside them."""

    name: str
    path: Path
    versions: tuple[PromptVersion, ...]
    columns: dict[str, dict[int, str]]  # column title → {version number: cell}: channels, the last full eval

    def summary(self) -> list[dict[str, Any]]:
        return [{**version.summary(), **{title: cells.get(version.number) for title, cells in self.columns.items()}}
                for version in self.versions]


@dataclass(frozen=True)
class PromptSource:
    """The prompt's file as of a version (`version` or `resolved` says which), or the working file (both None)."""

    name: str
    path: Path
    text: str
    version: Optional[PromptVersion] = None  # a version of the current branch's history
    resolved: Optional[ResolvedVersion] = None  # a ref resolved to a commit that history does not list as a version


@dataclass(frozen=True)
class PromptDiff:
    """What changed from `old_label` to `new_label`, section by section."""

    old_label: str
    new_label: str
    changes: tuple[PromptChange, ...]

    @property
    def title(self) -> str:
        count = len(self.changes)
        return f"{self.old_label} → {self.new_label}: {count} change{'s' if count != 1 else ''}"


def versions(prompt: str) -> VersionHistory:
    """`prompt` (a name, or the path of its file in prompts/) and every committed version of its file, with its channels
    and last full eval."""
    path = resolve_prompt_path(prompt)
    history = prompt_versions(path)
    return VersionHistory(path.stem, path, tuple(history), version_columns(path, history))


def show(reference: str) -> PromptSource:
    """`NAME@REF` (v3, a commit, tag, branch or channel) as its file was then; `NAME` alone is the working file."""
    name, ref = parse_prompt_ref(reference)
    path = resolve_prompt_path(name)
    if ref is None:
        return PromptSource(path.stem, path, read_utf8(path, PromptFileError))
    resolved = resolve(path, ref)
    described = {version.commit: version for version in prompt_versions(path)}.get(resolved.commit)
    text = read_text_at(path, resolved.commit)
    return PromptSource(path.stem, path, text, version=described, resolved=None if described else resolved)


def diff(old: str, new: str) -> PromptDiff:
    """What changed from `old` to `new` (each `NAME@REF`, or `NAME` for the working file), by section."""
    sides = []
    for reference in (old, new):
        parse_prompt_ref(reference)  # NAME or NAME@REF, refused in one sentence otherwise
        served = served_version(reference)
        at = f"{served.label} ({served.commit[:8]})" if served.commit and served.label != "working file" else f"({served.label})"
        sides.append((served.prompt, f"{served.prompt.name} {at}"))
    (old_prompt, old_label), (new_prompt, new_label) = sides
    return PromptDiff(old_label, new_label, tuple(diff_prompts(old_prompt, new_prompt, old_label=old_label, new_label=new_label)))

