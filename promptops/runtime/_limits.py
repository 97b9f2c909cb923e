"""Per-process state the guardrails share across requests: rate buckets, circuit breakers, spend per user key.

State lives in this process only: a service running several worker processes gets one bucket,
breaker and key ledger per process, so its effective limits are per worker. Keys are always
(prompt name, ...) so two prompts never share a bucket or a breaker.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable, Optional

from promptops.models import Budget

Clock = Callable[[], float]


@dataclass
class TokenBucket:
    """`rate_per_s` tokens a second up to `capacity`; a request takes one or is told how long to wait."""

    rate_per_s: float
    capacity: float
    clock: Clock = time.monotonic
    tokens: float = field(default=-1.0)
    updated: float = field(default=0.0)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens, self.updated = self.capacity, self.clock()

    def take(self) -> Optional[float]:
        """None when a token was taken; otherwise the seconds until one is available."""
        with self._lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate_per_s)
            self.updated = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return None
            return (1.0 - self.tokens) / self.rate_per_s


CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass
class Breaker:
    """Closed: calls pass. Open after `failures` in a row: calls are refused until `cooldown_s` passed.
    Half-open: one probe call passes; its success closes the breaker, its failure opens it again."""

    failures: int
    cooldown_s: float
    clock: Clock = time.monotonic
    state: str = CLOSED
    consecutive_failures: int = 0
    opened_at: float = 0.0
    trips: int = 0
    _probing: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def allow(self) -> bool:
        with self._lock:
            if self.state == OPEN and self.clock() - self.opened_at >= self.cooldown_s:
                self.state, self._probing = HALF_OPEN, False
            if self.state == CLOSED:
                return True
            if self.state == HALF_OPEN and not self._probing:
                self._probing = True
                return True
            return False

    def succeeded(self) -> None:
        with self._lock:
            self.state, self.consecutive_failures, self._probing = CLOSED, 0, False

    def release(self) -> None:
        """A call let through was not made after all (e.g. a cost cap refused it): free the probe slot."""
        with self._lock:
            self._probing = False

    def failed(self) -> None:
        with self._lock:
            self.consecutive_failures += 1
            if self.state == HALF_OPEN or self.consecutive_failures >= self.failures:
                if self.state != OPEN:
                    self.trips += 1
                self.state, self.opened_at, self._probing = OPEN, self.clock(), False

    @property
    def retry_in_s(self) -> float:
        return max(0.0, self.cooldown_s - (self.clock() - self.opened_at)) if self.state == OPEN else 0.0


class _Registry:
    """Objects created on first use per key and kept for the life of the process."""

    def __init__(self) -> None:
        self._items: dict[Hashable, object] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, create: Callable[[], object]) -> object:
        with self._lock:
            if key not in self._items:
                self._items[key] = create()
            return self._items[key]

    def values(self) -> list[object]:
        with self._lock:
            return list(self._items.values())

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_buckets = _Registry()
_breakers = _Registry()
_key_spend = _Registry()


def bucket_for(prompt: str, key: str, per_minute: float, burst: int) -> TokenBucket:
    return _buckets.get((prompt, key, per_minute, burst), lambda: TokenBucket(per_minute / 60.0, float(burst)))  # type: ignore[return-value]


def breaker_for(prompt: str, target: str, failures: int, cooldown_s: float) -> Breaker:
    """One breaker per prompt and model: a failing model is failing for every version that uses it."""
    return _breakers.get((prompt, target, failures, cooldown_s), lambda: Breaker(failures, cooldown_s))  # type: ignore[return-value]


def key_budget(prompt: str, key: str, cap_usd: float) -> Budget:
    """What one user key has spent on one prompt in this process, against its cap."""
    return _key_spend.get((prompt, key, cap_usd), lambda: Budget(max_cost_usd=cap_usd))  # type: ignore[return-value]


def breaker_trips() -> int:
    """Times any breaker opened in this process (for benchmarks and health checks)."""
    return sum(breaker.trips for breaker in _breakers.values())  # type: ignore[attr-defined]


def reset() -> None:
    """Forget all buckets, breakers and key spend (tests, or a deliberate reset of a long-lived worker)."""
    for registry in (_buckets, _breakers, _key_spend):
        registry.clear()
