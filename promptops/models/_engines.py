"""Engines registered at run time for model strings `PREFIX/NAME`, such as a test's `scripted/NAME`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    from promptops.artifact import ModelSpec

EngineFactory = Callable[["ModelSpec"], Any]

_ENGINES: dict[str, EngineFactory] = {}


def register_engine(prefix: str, factory: Optional[EngineFactory]) -> None:
    """Serve model strings `PREFIX/NAME` in this process with the engine `factory(spec)` returns; None removes PREFIX.

    The engine keeps DSPy's custom-engine contract (`complete(Request) -> Response`, `stream`, `close`) and may
    declare `supports_response_schema`, `supported_params` and `usd_per_million` (its input and output price,
    unless the prompt file sets `model.price`). `build_lm` meters it like any model, so DSPy's adapter and cache
    and promptops' metering, budgets and tracing all run; `promptops.testing.ScriptedModel` registers `scripted`.
    """
    if prefix == "local" or not prefix.isidentifier():
        raise ValueError(f"cannot register an engine for {prefix!r}: use a word other than 'local'")
    if factory is None:
        _ENGINES.pop(prefix, None)
    else:
        _ENGINES[prefix] = factory


def registered_engine(model_id: str) -> Optional[EngineFactory]:
    """The factory registered for `model_id`'s prefix, if any."""
    prefix, slash, _ = model_id.partition("/")
    return _ENGINES.get(prefix) if slash else None
