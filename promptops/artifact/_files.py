"""Where a project's files are and how they are written: the project root, a prompt's path, atomic writes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from promptops.errors import UnknownPromptError


def atomic_write_text(path: Path, text: str) -> Path:
    """Write through a temporary file and `os.replace`, keeping the file's mode (a new file gets the umask's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _mode_for(path))  # mkstemp makes 0600: a prompt file written by promptops must stay readable
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def find_project_root(start: str | Path | None = None) -> Path:
    """The nearest folder at or above `start` that has a `prompts/` folder."""
    env = os.environ.get("PROMPTOPS_PROJECT")
    if env:
        return Path(env).resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "prompts").is_dir():
            return folder
    return here


def resolve_prompt_path(reference: str, root: str | Path | None = None) -> Path:
    """A prompt name (`banking_intent`) or a path to a YAML file, as a path."""
    candidate = Path(reference)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.exists():
            raise UnknownPromptError(f"{reference}: no such prompt file")
        return candidate
    folder = Path(root) if root else find_project_root()
    path = folder / "prompts" / f"{reference}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (folder / "prompts").glob("*.yaml"))
        hint = f"; known prompts: {', '.join(known)}" if known else f"; {folder / 'prompts'} has no prompt files"
        raise UnknownPromptError(f"unknown prompt {reference!r}{hint}")
    return path
