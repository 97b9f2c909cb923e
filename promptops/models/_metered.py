"""Counting what model calls cost: tokens, USD, latency, and whether the cache answered.

DSPy's usage tracker drops cache hits (their usage is empty), but an eval must still know
what each answer cost to produce, and an optimizer must know how many calls really reached
a model. `MeteredLM` records every call in its own totals and in the meter of the current
scope (one per evaluated example), without changing how DSPy executes or caches it.

Each call also records how sure the model was of the labels it chose, when it says
(`promptops.models._confidence`); a meter's confidence is that of its last call that has one.

An answer cut off at `max_tokens` is recorded as truncated (a cached one too). DSPy logs a
warning per such call; inside a scope that reports truncated answers itself
(`metering(reports_truncation=True)`, as an eval does in its summary) that warning is dropped.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import dspy
from dspy.utils.callback import with_callbacks

from promptops.models._confidence import call_confidence


@dataclass(frozen=True)
class ModelCall:
    """One LM call as an eval sees it."""

    model: str
    input_tokens: int
    output_tokens: int
    latency_s: float
    cached: bool
    cost_usd: Optional[float]
    truncated: bool = False  # the answer stopped at max_tokens
    max_tokens: Optional[int] = None  # the limit the call was made with
    confidence: Optional[dict[str, float]] = None  # probability of each chosen label, per output field; None when not reported


@dataclass
class CallMeter:
    """The calls made inside one scope, e.g. one evaluated example."""

    calls: list[ModelCall] = field(default_factory=list)
    reports_truncation: bool = False  # the scope's owner tells the user about truncated answers; DSPy need not

    @property
    def truncated(self) -> int:
        """Answers that stopped at max_tokens."""
        return sum(call.truncated for call in self.calls)

    @property
    def truncated_at_tokens(self) -> Optional[int]:
        """The max_tokens truncated answers hit (the largest, if calls differed); None when none was cut."""
        limits = [call.max_tokens for call in self.calls if call.truncated and call.max_tokens is not None]
        return max(limits) if limits else None

    @property
    def confidence(self) -> Optional[dict[str, float]]:
        """The label confidences of the last call that reported some: the answer a prediction came from."""
        return next((call.confidence for call in reversed(self.calls) if call.confidence), None)

    @property
    def model_calls(self) -> int:
        return sum(not call.cached for call in self.calls)

    @property
    def cache_hits(self) -> int:
        return sum(call.cached for call in self.calls)

    @property
    def input_tokens(self) -> int:
        return sum(call.input_tokens for call in self.calls)

    @property
    def output_tokens(self) -> int:
        return sum(call.output_tokens for call in self.calls)

    @property
    def latency_s(self) -> float:
        return sum(call.latency_s for call in self.calls)

    @property
    def cost_usd(self) -> Optional[float]:
        costs = [call.cost_usd for call in self.calls]
        return None if any(cost is None for cost in costs) else sum(costs)  # type: ignore[arg-type]


_current_meter: contextvars.ContextVar[Optional[CallMeter]] = contextvars.ContextVar("promptops_meter", default=None)


_TRUNCATION_WARNING = "LM response was truncated"  # how both of DSPy's warnings start (dspy.clients.lm)


class _TruncationReported(logging.Filter):
    """Drops DSPy's truncation warning for a call made in a scope that reports truncated answers itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        meter = _current_meter.get()
        return not (meter is not None and meter.reports_truncation and str(record.msg).startswith(_TRUNCATION_WARNING))


logging.getLogger("dspy.clients.lm").addFilter(_TruncationReported())


@contextmanager
def metering(*, reports_truncation: bool = False) -> Iterator[CallMeter]:
    """Collect the calls made in this thread (or task) until the block ends."""
    meter = CallMeter(reports_truncation=reports_truncation)
    token = _current_meter.set(meter)
    try:
        yield meter
    finally:
        _current_meter.reset(token)


@dataclass(frozen=True)
class UsdPerMillion:
    input: float
    output: float


class MeteredLM(dspy.LM):
    """A `dspy.LM` that prices and counts its calls; execution and caching stay DSPy's."""

    def __init__(self, model: str, *, price: Optional[UsdPerMillion] = None, **kwargs: Any):
        super().__init__(model, **kwargs)
        self.price = price
        self._totals_lock = threading.Lock()
        self.totals = CallMeter()
        self._tokens_per_character: Optional[float] = None  # the densest ratio observed so far
        self._dearest_call_usd = 0.0  # the estimate for a call to a model without a configured price

    def __deepcopy__(self, memo: dict) -> "MeteredLM":
        """Copies of a program (DSPy's optimizers make many) share the model handle and its meter."""
        return self

    @with_callbacks
    def __call__(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        from dspy.clients._deprecation import warn_openai_messages
        from dspy.clients.execution import execute, finalize, prepare

        call = prepare(self, prompt, messages, kwargs)
        warn_openai_messages(self, messages)
        admitted = self._admit(call)
        started = time.perf_counter()
        try:
            result = execute(self, call)
        except BaseException:
            _settle(admitted, None)
            raise
        cost = self._record(result, time.perf_counter() - started, call)
        _settle(admitted, cost, sent=not result.cache_hit)
        return finalize(self, call, result)

    @with_callbacks
    async def acall(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        import asyncio

        from dspy.clients._deprecation import warn_openai_messages
        from dspy.clients.execution import aexecute, finalize, prepare

        call = await asyncio.to_thread(prepare, self, prompt, messages, kwargs, asynchronous=True)
        warn_openai_messages(self, messages)
        admitted = self._admit(call, asynchronous=True)
        started = time.perf_counter()
        try:
            result = await aexecute(self, call)
        except BaseException:
            _settle(admitted, None)
            raise
        cost = self._record(result, time.perf_counter() - started, call)
        _settle(admitted, cost, sent=not result.cache_hit)
        return finalize(self, call, result)

    def _admit(self, call: Any, *, asynchronous: bool = False) -> Any:
        """Reserve room in every active budget for a call the cache cannot answer; see `promptops.models._budget`."""
        from promptops.models._budget import active_budgets, admit_all

        budgets = active_budgets()
        if not budgets or self._cache_answers(call, asynchronous):
            return None
        return admit_all(budgets, self._estimated_cost(call))

    def _cache_answers(self, call: Any, asynchronous: bool) -> bool:
        if not call.cache:
            return False
        from dspy.clients.execution import IGNORED_CACHE_KEYS

        return dspy.cache.get(call.key(self, asynchronous), IGNORED_CACHE_KEYS) is not None

    def _estimated_cost(self, call: Any) -> float:
        """A high estimate: prompt characters at the densest tokens-per-character seen, plus max_tokens out."""
        characters = _prompt_characters(call)
        max_tokens = int((call.kwargs or {}).get("max_tokens") or self.kwargs.get("max_tokens") or 0)
        input_tokens = characters * (self._tokens_per_character or 0.5)  # before any call: 2 characters a token, high for prose
        if self.price is not None:
            return (input_tokens * self.price.input + max_tokens * self.price.output) / 1e6
        return self._dearest_call_usd  # a hosted model's first call cannot be priced before it is made

    def _record(self, result: Any, elapsed_s: float, call: Any = None) -> Optional[float]:
        input_tokens, output_tokens, backend_latency_s = _usage_of(result)
        cached = bool(result.cache_hit)
        # The backend's own timing excludes queueing for a shared local model and survives in the cache.
        latency_s = backend_latency_s if backend_latency_s is not None else elapsed_s
        if self.price is not None:
            cost = (input_tokens * self.price.input + output_tokens * self.price.output) / 1e6
        else:
            cost = result.cost  # DSPy's estimate from the provider's published prices, None when unknown
        max_tokens = (call.kwargs or {}).get("max_tokens") if call is not None else None
        max_tokens = max_tokens or self.kwargs.get("max_tokens")
        record = ModelCall(self.model, input_tokens, output_tokens, latency_s, cached, cost, _truncated(result),
                           int(max_tokens) if max_tokens else None, call_confidence(result, call))
        with self._totals_lock:
            self.totals.calls.append(record)
            if not cached and cost is not None:
                self._dearest_call_usd = max(self._dearest_call_usd, cost)
            if not cached and input_tokens and call is not None:
                characters = _prompt_characters(call)
                if characters:
                    self._tokens_per_character = max(self._tokens_per_character or 0.0, input_tokens / characters)
        meter = _current_meter.get()
        if meter is not None:
            meter.calls.append(record)
        return cost


def _settle(admitted: Any, cost: Optional[float], *, sent: bool = True) -> None:
    for budget, reservation in admitted or ():
        budget.settle(reservation, cost, sent=sent)


def _prompt_characters(call: Any) -> int:
    if call.messages:
        return sum(len(str(message.get("content", ""))) for message in call.messages)
    if call.request is not None:
        return len(str(call.request))
    return len(str(call.prompt or ""))


def _truncated(result: Any) -> bool:
    """Whether the answer stopped at max_tokens: a native response's finish reason, else the raw choices' (LiteLLM)."""
    responses = getattr(result, "responses", ()) or ()
    if responses:
        return any(response.finish_reason == "length" for response in responses)
    raw = result.raw
    choices = (raw.get("choices") if isinstance(raw, dict) else getattr(raw, "choices", None)) or ()
    return any((choice.get("finish_reason") if isinstance(choice, dict) else getattr(choice, "finish_reason", None)) == "length"
               for choice in choices)


def _usage_of(result: Any) -> tuple[int, int, Optional[float]]:
    """Tokens of the answer, from the live usage or, on a cache hit, the cached response."""
    usage = result.usage or {}
    input_tokens = usage.get("prompt_tokens")
    output_tokens = usage.get("completion_tokens")
    latency_s = None
    for response in getattr(result, "responses", ()) or ():
        if input_tokens is None and response.usage.input_tokens is not None:
            input_tokens, output_tokens = response.usage.input_tokens, response.usage.output_tokens
        data = response.provider_data if isinstance(response.provider_data, dict) else {}
        latency_s = (data.get("promptops") or {}).get("latency_s", latency_s)
    if input_tokens is None and result.raw is not None:  # LiteLLM's compatibility path keeps its own object
        raw_usage = getattr(result.raw, "usage", None) or (result.raw.get("usage") if isinstance(result.raw, dict) else None)
        if raw_usage is not None:
            get = raw_usage.get if isinstance(raw_usage, dict) else lambda key: getattr(raw_usage, key, None)
            input_tokens, output_tokens = get("prompt_tokens"), get("completion_tokens")
    return int(input_tokens or 0), int(output_tokens or 0), latency_s
