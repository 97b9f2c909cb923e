"""Model backends: from a model string and its parameters to a priced, metered `dspy.LM`.

- `local/smollm2-135m` (the default), `local/gemma3-270m`: GGUF files shipped in PyPI packages,
  run in-process by llama.cpp.
- `gguf:PATH`: any GGUF file of your own, run the same way.
- anything else with a provider prefix (`openai/...`, `anthropic/...`, `ollama/...`, or an
  OpenAI-compatible server through `api_base`): DSPy's own engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from promptops.artifact import ModelSpec
from promptops.errors import PromptopsError, UnknownModelError
from promptops.models._catalog import LOCAL_MODELS, local_model
from promptops.models._engines import registered_engine



@dataclass(frozen=True)
class LocalModelListing:
    """One embedded model as `promptops models` lists it; prices are nominal, not a bill."""

    model: str
    parameters_millions: int
    input_usd_per_million: float
    output_usd_per_million: float
    weights: Optional[str]  # the GGUF file, None when not installed here
    install_hint: Optional[str]  # how to install it, when it is not
    terms: str


def list_local_models() -> list[LocalModelListing]:
    """Every embedded model, whether its weights are installed here, and where."""
    listings = []
    for model in LOCAL_MODELS.values():
        try:
            weights, hint = str(model.locate()), None
        except PromptopsError:
            weights, hint = None, model.install_hint
        listings.append(LocalModelListing(model.model_id, model.parameters_millions, model.input_usd_per_million,
                                          model.output_usd_per_million, weights, hint, model.terms))
    return listings


def is_local(model_id: str) -> bool:
    return model_id.startswith(("local/", "gguf:"))


def price_of(spec: ModelSpec) -> Optional[tuple[float, float]]:
    """USD per million (input, output) tokens: the file's price, else the local nominal one."""
    if spec.price is not None:
        return spec.price.input_per_million_usd, spec.price.output_per_million_usd
    if spec.id in LOCAL_MODELS:
        model = LOCAL_MODELS[spec.id]
        return model.input_usd_per_million, model.output_usd_per_million
    if spec.id.startswith("gguf:"):
        return LOCAL_MODELS["local/smollm2-135m"].input_usd_per_million, LOCAL_MODELS["local/smollm2-135m"].output_usd_per_million
    return None  # hosted: DSPy prices each answer from the provider's published table


# Engine options a prompt file may set under `model.params` for the embedded engine (see LlamaEngine).
ENGINE_OPTIONS = ("decoding", "calibrate")


def engine_model_name(model_id: str, engine_options: dict[str, Any]) -> str:
    """The model string with its non-default engine options, e.g. `local/smollm2-135m[calibrate]`."""
    marks = []
    if engine_options.get("decoding", "guided") != "guided":
        marks.append(f"decoding={engine_options['decoding']}")
    calibrate = engine_options.get("calibrate", "labels")
    if calibrate is True:
        marks.append("calibrate")
    elif calibrate is False:
        marks.append("uncalibrated")
    return f"{model_id}[{','.join(marks)}]" if marks else model_id


def check_model_id(model_id: str) -> None:
    """Refuse a model string no backend can serve, before any call is made."""
    if model_id.startswith("local/"):
        local_model(model_id)
    elif model_id.startswith("gguf:"):
        path = Path(model_id.removeprefix("gguf:")).expanduser()
        if not path.is_file():
            raise UnknownModelError(f"model {model_id!r}: no GGUF file at {path}", value=model_id)
    elif "/" not in model_id or model_id.endswith("/"):
        raise UnknownModelError(
            f"unknown model {model_id!r}: use local/smollm2-135m, gguf:PATH, or a provider/model string such as openai/gpt-4o-mini",
            value=model_id,
        )


def check_model_params(spec: ModelSpec) -> None:
    """Refuse a `model.params` key the model's client cannot send, before any call: a misspelt `temprature` would
    otherwise fail every call with lm15's contract text (embedded models, registered engines) or go to the provider.

    A key is sent when DSPy's LM or its client takes it as a setting, or when lm15 carries it in a request (probed
    with lm15's own reader of a Chat Completions body). Any other key is refused for the engines that speak only
    lm15; for a hosted model only when it is close to a known key, since LiteLLM forwards provider-specific ones.
    """
    import difflib

    from promptops.errors import UnknownParameterError

    settings = _client_settings(spec.id)
    for key, value in spec.params.items():
        if key in settings or _carried_by_lm15(key, value):
            continue
        known = sorted(settings | {name for name in _request_fields() if _carried_by_lm15(name, None)})
        close = difflib.get_close_matches(key, known, n=1)
        if close:
            raise UnknownParameterError(key, f"unknown parameter; did you mean {close[0]!r}?")
        if is_local(spec.id) or registered_engine(spec.id) is not None:
            raise UnknownParameterError(key, f"unknown parameter: {spec.id} takes request settings such as temperature,"
                                             f" top_p, top_k, stop, seed, and {', '.join(ENGINE_OPTIONS)}")


def _client_settings(model_id: str) -> set[str]:
    """`model.params` keys that configure the client rather than the request: DSPy's LM settings, its connection
    settings, and the embedded engine's options."""
    import inspect

    import dspy
    from dspy.clients.backend_selection import CLIENT_KEYS  # the keys DSPy itself keeps out of a request body

    names = {name for name, parameter in inspect.signature(dspy.LM.__init__).parameters.items()
             if parameter.kind is parameter.KEYWORD_ONLY or parameter.kind is parameter.POSITIONAL_OR_KEYWORD}
    names |= set(CLIENT_KEYS) | {"rollout_id", "num_generations"}
    if is_local(model_id):
        names |= {*ENGINE_OPTIONS, "n_ctx"}
    return names - {"self", "model"}


def _request_fields() -> list[str]:
    """The canonical request's settings (`dspy.lm15.Config`), as names to suggest for a misspelt one."""
    import dataclasses

    from dspy.lm15 import Config

    return [field.name for field in dataclasses.fields(Config)]


def _carried_by_lm15(key: str, value: Any) -> bool:
    """Whether lm15 reads `key` in a Chat Completions body (its value is checked when the request is sent)."""
    from dspy.lm15 import UnsupportedFeatureError, request_from_openai_chat

    try:
        request_from_openai_chat({"model": "promptops-check", "messages": [{"role": "user", "content": "."}], key: value})
    except UnsupportedFeatureError:
        return False
    except (ValueError, TypeError):  # a key it reads, with a value it does not take alone
        return True
    return True


def build_lm(spec: ModelSpec, *, cache: bool = True, num_retries: Optional[int] = None) -> Any:
    """A `MeteredLM` for `spec`; DSPy's cache keys on model, messages and parameters, so any change misses.

    `num_retries` overrides how often the provider client retries a failed request by itself
    (LiteLLM's default otherwise); local models and registered engines never retry.
    """
    from promptops.models._metered import MeteredLM, UsdPerMillion

    check_model_id(spec.id)
    check_model_params(spec)
    price = price_of(spec)
    options: dict[str, Any] = {
        "temperature": spec.temperature,
        "max_tokens": spec.max_tokens,
        "cache": cache,
        "price": UsdPerMillion(*price) if price else None,
        **spec.params,
    }
    if is_local(spec.id):
        from promptops.models._llama_engine import LlamaEngine

        path = local_model(spec.id).locate() if spec.id.startswith("local/") else Path(spec.id.removeprefix("gguf:")).expanduser()
        context_tokens = int(options.pop("n_ctx", 4096))
        engine_options = {name: options.pop(name) for name in ENGINE_OPTIONS if name in options}
        engine = LlamaEngine(spec.id, path, context_tokens=context_tokens, **engine_options)
        # DSPy's cache keys on the LM's model string: answers decoded another way must not answer for these.
        return MeteredLM(engine_model_name(spec.id, engine_options), engine=engine, num_retries=0, **options)
    unsupported = sorted(set(ENGINE_OPTIONS) & set(options))
    if unsupported:
        raise PromptopsError(f"model {spec.id!r}: params {', '.join(unsupported)} apply to the embedded engine only (local/... or gguf:PATH)")
    factory = registered_engine(spec.id)
    if factory is not None:
        engine = factory(spec)
        if price is None and getattr(engine, "usd_per_million", None):
            options["price"] = UsdPerMillion(*engine.usd_per_million)
        return MeteredLM(spec.id, engine=engine, num_retries=0, **options)
    if spec.api_base:
        options["api_base"] = spec.api_base
    if num_retries is not None:
        options["num_retries"] = num_retries
    return MeteredLM(spec.id, **options)
