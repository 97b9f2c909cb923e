"""`promptops init`: a new project's layout, ready for `promptops eval` on the embedded model.

The files are package data in `project/` beside this module: a commented example prompt (a
3-intent classifier), its eval set (real BANKING77 rows, with their attribution), an example
experiment, a README and a `.gitignore` (kept as `gitignore`, because a file whose name starts
with a dot is easily lost from a wheel). They are written, then committed: promptops versions
prompts by their commits, so the example is v1 from the start.
"""

from __future__ import annotations

import os
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Iterator, Optional

from promptops.artifact import atomic_write_text
from promptops.errors import PromptopsError, where

EXAMPLE_PROMPT = "card_intent"
_RENAMED = {"gitignore": ".gitignore"}
_KEPT_IF_PRESENT = ("README.md",)  # a fresh clone's README is the owner's; theirs stays
_MERGED_IF_PRESENT = (".gitignore",)  # a fresh clone's .gitignore gets the lines it lacks


def init_project(path: str | Path = ".") -> Path:
    """Write a new project into `path` (made if missing) and commit it; returns the project folder.

    Refused when `path` already has a `prompts/` folder, or a file the example would overwrite. In
    a folder that is not yet in a git repository, a new repository is made there; inside one (a
    fresh clone), the new files are committed to it. Without a git identity configured, the
    repository gets a local fallback one so that this commit and later promotions can be made.
    """
    from promptops.versioning import check_git, commit_new_project

    check_git()  # no git program: say so before a file is written
    root = Path(path).expanduser().resolve()
    if (root / "prompts").exists():
        raise PromptopsError(f"{where(root / 'prompts')} already exists: promptops init makes a new project; "
                             "run it in an empty folder or give it a new one (promptops init my-prompts)")
    templates = dict(_templates())
    clashes = [name for name in templates if (root / name).exists() and name not in _KEPT_IF_PRESENT + _MERGED_IF_PRESENT]
    if clashes:
        raise PromptopsError(f"{where(root / clashes[0])} already exists: promptops init writes only new files; "
                             "run it in an empty folder or give it a new one")
    mode = _file_mode()
    written: dict[Path, Optional[str]] = {}  # each file written → its text before (None: it is new)
    made = {folder for name in templates for folder in ((root / name).parent, *(root / name).parents) if not folder.exists()}
    try:
        for name, text in templates.items():
            target = root / name
            if target.exists() and name in _KEPT_IF_PRESENT:
                continue
            before = target.read_text(encoding="utf-8") if target.exists() else None
            if before is not None and name in _MERGED_IF_PRESENT:
                text = _merged_lines(before, text)
            written[target] = before
            atomic_write_text(target, text)
            target.chmod(mode)  # the temporary file it was written as is private (0600); these are ordinary files
        commit_new_project(root, list(written), f"New promptops project: the {EXAMPLE_PROMPT} example (promptops init)")
    except BaseException:
        _take_back(written, made)  # a refused commit (a lock, a read-only .git) leaves the folder as it was, so init can run again
        raise
    return root


def _take_back(written: dict[Path, Optional[str]], made: set[Path]) -> None:
    """Undo `init`'s writes: new files removed, changed ones restored, the folders it made removed if empty."""
    for target, before in written.items():
        try:
            if before is None:
                target.unlink(missing_ok=True)
            elif target.read_text(encoding="utf-8") != before:
                target.write_text(before, encoding="utf-8")
        except OSError:  # the folder refuses this too: the error being raised already names it
            pass
    for folder in sorted(made, key=lambda folder: len(folder.parts), reverse=True):
        try:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        except OSError:
            pass


def _templates() -> Iterator[tuple[str, str]]:
    """(relative path in the new project, text) of every template file."""

    def walk(folder: Traversable, prefix: str) -> Iterator[tuple[str, str]]:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.is_dir():
                yield from walk(entry, f"{prefix}{entry.name}/")
            else:
                yield f"{prefix}{_RENAMED.get(entry.name, entry.name)}", entry.read_text(encoding="utf-8")

    yield from walk(files(__package__) / "project", "")


def _file_mode() -> int:
    """What a new file gets under this process's umask (0644 under the usual 022)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _merged_lines(existing: str, ours: str) -> str:
    """`existing` with the lines of `ours` it lacks appended (comments included, for context)."""
    have = set(existing.splitlines())
    missing = [line for line in ours.splitlines() if line not in have or not line.strip()]
    if not any(line.strip() and not line.startswith("#") for line in missing):
        return existing
    separator = "" if existing.endswith("\n") or not existing else "\n"
    return f"{existing}{separator}\n" + "\n".join(missing).strip("\n") + "\n"
