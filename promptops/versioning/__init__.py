"""Versions in git: the only git adapter (_git), channels and NAME@REF resolution, promotion (lock, journal, moves), status and sync, contenders compared on committed data, and `promptops check`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from promptops._lazy import lazy_exports

if TYPE_CHECKING:
    from promptops.versioning._channels import ResolvedVersion, ServedVersion, channels_file, pointers, previous_commit, read_channels, resolve, served_version
    from promptops.versioning._check import CheckReport, PromptCheck, check
    from promptops.versioning._contenders import compare, contender, require_committed_data
    from promptops.versioning._git import PromptVersion, check_git, commit_new_project, commit_paths, file_revision, has_uncommitted_changes, head_commit, load_prompt_at, open_repo, parse_prompt_ref, prompt_versions, read_committed, read_text_at, undo_commit
    from promptops.versioning._promotion import ChannelBusyError, ChannelMove, ChannelMovedError, Drift, GateFailedError, InterruptedMove, PromptStatus, StatusReport, assign_channel, promote, rollback, status, sync, version_columns
    from promptops.versioning._history import PromptDiff, PromptSource, VersionHistory, diff, show, versions

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "_channels": "ResolvedVersion ServedVersion channels_file pointers previous_commit read_channels resolve served_version",
    "_check": "CheckReport PromptCheck check",
    "_contenders": "compare contender require_committed_data",
    "_git": "PromptVersion check_git commit_new_project commit_paths file_revision has_uncommitted_changes head_commit load_prompt_at open_repo parse_prompt_ref prompt_versions read_committed read_text_at undo_commit",
    "_promotion": "ChannelBusyError ChannelMove ChannelMovedError Drift GateFailedError InterruptedMove PromptStatus StatusReport assign_channel promote rollback status sync version_columns",
    "_history": "PromptDiff PromptSource VersionHistory diff show versions",
})
