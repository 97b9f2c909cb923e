"""Test doubles for what promptops talks to: a scripted model behind the model string `scripted/NAME`
(DSPy's adapter, cache and promptops' metering run as for any model), a fault-injecting OpenAI-compatible
server, a scripted agent it can serve (ReAct steps from a plan per task), and a corpus of real-shaped
secrets (generated at run time) and look-alikes for the secret scrubber.

    from promptops.testing import FaultRates, FaultServer, ScriptedModel

    with ScriptedModel("labels", {"lost my card": {"intent": "lost_or_stolen_card"}}) as model:
        ...  # a prompt whose model.id is model.model_id, "scripted/labels"

    with FaultServer(FaultRates(server_error=0.1, timeout=0.05), seed=1) as server:
        ...  # point a prompt's `model.api_base` at server.base_url
"""

from promptops.testing.fault_server import (
    BAD_REQUEST,
    FAULTS,
    FaultRates,
    FaultServer,
    ServedRequest,
    default_answer,
    last_user_message,
    request_schema,
)
from promptops.testing.scripted_agent import AgentPlan, ScriptedAgent, plan
from promptops.testing.scripted_model import Reply, ScriptedModel, ScriptedRequest
from promptops.testing.secret_corpus import KINDS, Lookalike, SecretSample, lookalike_samples, secret_samples

__all__ = [
    "AgentPlan",
    "BAD_REQUEST",
    "FAULTS",
    "FaultRates",
    "FaultServer",
    "KINDS",
    "Lookalike",
    "Reply",
    "SecretSample",
    "ScriptedAgent",
    "ScriptedModel",
    "ScriptedRequest",
    "ServedRequest",
    "default_answer",
    "last_user_message",
    "lookalike_samples",
    "plan",
    "request_schema",
    "secret_samples",
]
