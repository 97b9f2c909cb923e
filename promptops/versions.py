"""The only module that talks to git: which commit a prompt file is at, and whether it changed since.

Versions, tags and channels (the versioning issue) build on these.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class FileRevision:
    """Where a file stands in git: the last commit that touched it and whether the work tree differs."""

    commit: Optional[str]
    dirty: bool


def file_revision(path: str | Path) -> FileRevision:
    """The file's git state; (None, True) outside a repository or for an untracked file."""
    import git

    path = Path(path).resolve()
    try:
        repo = git.Repo(path.parent, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return FileRevision(None, True)
    relative = str(path.relative_to(Path(repo.working_tree_dir).resolve()))
    try:
        commit = repo.git.log("-1", "--format=%H", "--", relative) or None
    except git.GitCommandError:  # a repository with no commits yet
        return FileRevision(None, True)
    dirty = commit is None or bool(repo.git.status("--porcelain", "--", relative))
    return FileRevision(commit, dirty)
