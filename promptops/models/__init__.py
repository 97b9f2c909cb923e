"""Model backends: from a model string and its parameters to a priced, metered `dspy.LM`.

- `local/smollm2-135m` (the default), `local/gemma3-270m`: GGUF files shipped in PyPI packages,
  run in-process by llama.cpp (`_llama_engine`, `_decoder`: the only llama.cpp code).
- `gguf:PATH`: any GGUF file of your own, run the same way.
- `PREFIX/NAME` for a prefix given to `register_engine`: that engine, e.g. a test's `scripted/NAME`.
- anything else with a provider prefix (`openai/...`, `anthropic/...`, `ollama/...`, or an
  OpenAI-compatible server through `api_base`): DSPy's own engine.

Every call is metered (`_metered`: tokens, cost, latency, confidence) and admitted against the
active budgets (`_budget`); `_doctor` checks that each embedded model loads.
"""

from __future__ import annotations

from promptops.models._budget import (
    Budget, BudgetExhausted, Reservation, active_budgets, admit_all, request_limits, spending_limit,
)
from promptops.models._catalog import LOCAL_MODELS, LocalModel, local_model
from promptops.models._confidence import least_sure
from promptops.models._doctor import ModelHealth, diagnose
from promptops.models._engines import register_engine, registered_engine
from promptops.models._lm import (
    LocalModelListing, build_lm, check_model_id, check_model_params, engine_model_name, is_local, list_local_models, price_of,
)
from promptops.models._metered import metering

__all__ = [
    "Budget", "BudgetExhausted", "LOCAL_MODELS", "LocalModel", "LocalModelListing", "ModelHealth", "Reservation",
    "active_budgets", "admit_all", "build_lm", "check_model_id", "check_model_params", "diagnose", "engine_model_name", "is_local",
    "least_sure", "list_local_models", "local_model", "metering", "price_of", "register_engine", "registered_engine",
    "request_limits", "spending_limit",
]
