"""Process settings promptops needs before DSPy, LiteLLM or MLflow are first imported.

Offline, LiteLLM would try to download its price list at import; it has a local copy. MLflow's
artifact progress bars are off: promptops shows its own progress.
"""

from __future__ import annotations

import os


def prepare_environment() -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # MLflow draws a progress bar for each artifact it reads back (an eval table, a resumed study's
    # candidate), into the middle of promptops' own output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
