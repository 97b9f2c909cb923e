"""MLflow's Prompt Registry: one registry version per promoted prompt content, and the channel aliases.

A registry version holds the prompt file's YAML as its template (through the secret scrubber, which
leaves a prompt file unchanged: credentials are refused when it is read), tagged with the git
commit and version it came from, so `prompts:/NAME@production` can rebuild the program when
only the tracking server is reachable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from promptops._secrets import redact_mapping, redact_yaml
from promptops.artifact import Prompt
from promptops.errors import TrackingError
from promptops.tracking._store import _first_line, _mlflow, display_uri


def _client(root: Optional[Path] = None) -> Any:
    mlflow = _mlflow(root)
    return mlflow.MlflowClient()

def register_prompt_version(
    prompt: Prompt, *, git_commit: str, label: str, metrics: Optional[dict[str, float]] = None, root: Optional[Path] = None
) -> int:
    """The registry version holding exactly this content at this commit; registered once, reused after."""
    client = _client(root)
    try:
        for version in _registry_versions(client, prompt.name):
            if version.tags.get("git_commit") == git_commit and version.tags.get("content_hash") == prompt.content_hash:
                return int(version.version)
        tags = {"git_commit": git_commit, "prompt_version": label, "content_hash": prompt.content_hash, "model": prompt.model.id}
        tags.update({f"metric.{key}": f"{value:.6g}" for key, value in (metrics or {}).items()})
        registered = client.register_prompt(
            name=prompt.name, template=redact_yaml(prompt.to_yaml()), commit_message=f"{label} ({git_commit[:8]})",
            tags=redact_mapping(tags),
        )
        return int(registered.version)
    except Exception as exc:
        raise TrackingError(f"cannot register {prompt.name} {label} in the MLflow Prompt Registry: {_first_line(exc)}") from None


def registry_aliases(name: str, root: Optional[Path] = None) -> dict[str, int]:
    """Alias → registry version for every version of the prompt."""
    client = _client(root)
    aliases: dict[str, int] = {}
    try:
        for version in _registry_versions(client, name):
            # search results leave aliases empty; a direct read fills them
            for alias in client.get_prompt_version(name, version.version).aliases or ():
                aliases[alias] = int(version.version)
    except Exception as exc:
        raise TrackingError(f"cannot read the MLflow Prompt Registry for {name}: {_first_line(exc)}") from None
    return aliases


def registry_versions(name: str, root: Optional[Path] = None) -> dict[int, dict[str, str]]:
    """Registry version → its tags, for every version of the prompt still in the registry."""
    client = _client(root)
    try:
        return {int(version.version): dict(version.tags) for version in _registry_versions(client, name)}
    except Exception as exc:
        raise TrackingError(f"cannot read the MLflow Prompt Registry for {name}: {_first_line(exc)}") from None


def registry_version_tags(name: str, version: int, root: Optional[Path] = None) -> dict[str, str]:
    return dict(_client(root).get_prompt_version(name, version).tags)


def set_alias(name: str, alias: str, version: Optional[int], root: Optional[Path] = None) -> None:
    """Point `alias` at `version`, or remove it when version is None."""
    client = _client(root)
    try:
        if version is None:
            if alias in registry_aliases(name, root):
                client.delete_prompt_alias(name, alias)
        else:
            client.set_prompt_alias(name, alias, int(version))
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(f"cannot set alias {alias!r} of {name} in the MLflow Prompt Registry: {_first_line(exc)}") from None


PENDING_MOVE_TAG = "promptops.move_pending"


def mark_move_pending(name: str, what: Optional[str], root: Optional[Path] = None) -> None:
    """Tag the registered prompt while a channel move is between git and the registry (None clears the tag).

    Git moves first and the alias follows; a process killed in between leaves the alias behind
    until the next promote, rollback or sync. A service that serves from the registry alone sees
    this tag and says so, instead of serving the older version silently."""
    from datetime import datetime, timezone

    client = _client(root)
    try:
        registered = client.get_prompt(name)
        if registered is None:
            return  # never registered: no alias can be served behind git's back
        if what is None:
            if PENDING_MOVE_TAG in (registered.tags or {}):
                client.delete_prompt_tag(name, PENDING_MOVE_TAG)
        else:
            client.set_prompt_tag(name, PENDING_MOVE_TAG, f"{what}, started {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    except Exception as exc:
        raise TrackingError(f"cannot tag {name} in the MLflow Prompt Registry: {_first_line(exc)}") from None


def pending_move(name: str, root: Optional[Path] = None) -> Optional[str]:
    """What channel move of `name` git may have made that the registry's aliases do not show yet, or None."""
    try:
        registered = _client(root).get_prompt(name)
    except Exception as exc:
        raise TrackingError(f"cannot read the MLflow Prompt Registry for {name}: {_first_line(exc)}") from None
    return (registered.tags or {}).get(PENDING_MOVE_TAG) if registered is not None else None


def load_registered_text(name: str, alias: str, root: Optional[Path] = None) -> tuple[str, dict[str, str]]:
    """The YAML and tags of `prompts:/NAME@alias`."""
    mlflow = _mlflow(root)
    try:
        version = mlflow.genai.load_prompt(f"prompts:/{name}@{alias}", link_to_model=False, cache_ttl_seconds=0)
    except Exception as exc:
        raise TrackingError(f"cannot load prompts:/{name}@{alias} from {display_uri(root)}: {_first_line(exc)}") from None
    return version.template, dict(version.tags)


def _registry_versions(client: Any, name: str) -> list[Any]:
    if client.get_prompt(name) is None:
        return []
    versions, token = [], None
    while True:
        page = client.search_prompt_versions(name, max_results=100, page_token=token)
        versions.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return versions

