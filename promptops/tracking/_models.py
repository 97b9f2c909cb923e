"""MLflow LoggedModels for agents: each agent version on MLflow's Agent versions page, with its evals and traces.

An agent version is identified by its content hash (what it would do, whatever its file's
layout). The first eval, promotion or traced request of a version creates its LoggedModel
(`mlflow.create_external_model`, type `agent`: its artifacts are the prompt file in git, not
an MLflow model) with the git commit, the version and the agent's settings as parameters;
later ones find it. Eval metrics and traces then carry its model id, so MLflow users find an
agent's quality, cost and traces where MLflow 3 puts them.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

from promptops._secrets import redact_mapping
from promptops.tracking._store import _experiment, _mlflow

_MODEL_IDS: dict[tuple[str, str, str], str] = {}
_LOCK = threading.Lock()
HASH_TAG = "promptops.content_hash"


def agent_model_id(prompt: Any, *, version: Optional[str] = None, commit: Optional[str] = None) -> Optional[str]:
    """The LoggedModel id of this agent version, created on first use; None for a prompt that is not an agent."""
    if not prompt.is_agent:
        return None
    mlflow = _mlflow()
    experiment_id = _experiment(mlflow, prompt.name)
    key = (mlflow.get_tracking_uri(), experiment_id, prompt.content_hash)
    with _LOCK:
        if key in _MODEL_IDS:
            return _MODEL_IDS[key]
        found = mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list", max_results=1,
                                            filter_string=f"tags.`{HASH_TAG}` = '{prompt.content_hash}'")
        if found:
            model_id = found[0].model_id
        else:
            loop = prompt.loop
            params = {
                "prompt": prompt.name, "content_hash": prompt.content_hash, "prompt_version": version or "uncommitted",
                "git_commit": commit or "uncommitted", "model": prompt.model.id, "max_steps": str(loop.max_steps),
                "tools": ",".join(tool.tool_name for tool in prompt.tools),
                "approval_required": ",".join(tool.tool_name for tool in prompt.tools if tool.approval == "required") or "none",
            }
            model = mlflow.create_external_model(
                name=prompt.name, model_type="agent", experiment_id=experiment_id, params=redact_mapping(params),
                tags={HASH_TAG: prompt.content_hash, "promptops.prompt": prompt.name, "promptops.version": version or "uncommitted"},
            )
            model_id = model.model_id
        _MODEL_IDS[key] = model_id
        return model_id


def mark_agent_version(prompt: Any, version: str, commit: Optional[str], channel: str) -> Optional[str]:
    """Tag the agent version's LoggedModel with its version and the channel it now serves (after a promote)."""
    model_id = agent_model_id(prompt, version=version, commit=commit)
    if model_id is not None:
        _mlflow().set_logged_model_tags(model_id, {"promptops.version": version, f"promptops.channel.{channel}": "true",
                                                   "promptops.git_commit": commit or "uncommitted"})
    return model_id
