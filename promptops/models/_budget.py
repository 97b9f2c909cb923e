"""Hard spending caps: USD, model calls and a deadline, checked before each call leaves.

An optimization must stop *before* a call that would break its budget, not notice afterwards.
Every `MeteredLM` asks the active budget for admission before a call that the cache cannot
answer; the call's price is estimated from its prompt length (at the most tokens per
character seen so far) and its `max_tokens`, so the estimate errs on the high side.
One budget is active per process: the optimizer's own calls (bootstrapping, instruction
proposals) and its evals run on threads DSPy starts, and all of them must be counted.
The production runtime adds budgets per request, session and user key with `request_limits`,
scoped to the calling context (thread or task), so one user's cap never refuses another's call.
"""

from __future__ import annotations

import contextvars
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Optional



class BudgetExhausted(BaseException):
    """The next model call would break a cap; nothing was sent.

    A BaseException, like KeyboardInterrupt, because it must stop the whole job: DSPy's
    optimizers (and an eval's per-example guard) catch `Exception` from a failed call,
    log it and go on with the next example, which would turn a hard cap into a soft one.
    """

    exit_code = 1

    def __init__(self, cap: str, message: str):
        self.cap = cap
        super().__init__(message)


@dataclass
class Budget:
    """Caps and what has been spent against them (including spend carried over from a resumed run)."""

    max_cost_usd: Optional[float] = None
    max_model_calls: Optional[int] = None
    deadline: Optional[float] = None  # time.monotonic() value
    spent_usd: float = 0.0
    model_calls: int = 0
    _reserved_usd: float = field(default=0.0, repr=False)
    _reserved_calls: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def from_limits(cls, *, max_cost_usd=None, max_model_calls=None, timeout_s=None, spent_usd=0.0, model_calls=0) -> "Budget":
        deadline = time.monotonic() + timeout_s if timeout_s else None
        return cls(max_cost_usd, max_model_calls, deadline, spent_usd, model_calls)

    def admit(self, estimated_cost_usd: float = 0.0) -> "Reservation":
        """Reserve one call of about this cost, or raise `BudgetExhausted` if it would break a cap.

        Reservations count until settled, so concurrent calls cannot all squeeze under a cap.
        """
        with self._lock:
            if self.deadline is not None and time.monotonic() >= self.deadline:
                raise BudgetExhausted("timeout", "the time budget ran out")
            calls = self.model_calls + self._reserved_calls
            if self.max_model_calls is not None and calls + 1 > self.max_model_calls:
                raise BudgetExhausted("max_model_calls", f"the next model call would exceed max_model_calls={self.max_model_calls}")
            spent = self.spent_usd + self._reserved_usd
            if self.max_cost_usd is not None and spent + estimated_cost_usd > self.max_cost_usd:
                raise BudgetExhausted(
                    "max_cost_usd",
                    f"the next model call (about ${estimated_cost_usd:.6f}) would exceed max_cost_usd=${self.max_cost_usd:g}"
                    f" (${self.spent_usd:.6f} spent)",
                )
            self._reserved_calls += 1
            self._reserved_usd += estimated_cost_usd
            return Reservation(estimated_cost_usd)

    def settle(self, reservation: "Reservation", cost_usd: Optional[float], *, sent: bool = True) -> None:
        """Replace the reservation by what the call cost (a call that reached the model counts even if it failed)."""
        with self._lock:
            self._reserved_calls -= 1
            self._reserved_usd -= reservation.estimated_cost_usd
            if sent:
                self.model_calls += 1
                self.spent_usd += cost_usd or 0.0

    @property
    def remaining_s(self) -> Optional[float]:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())


@dataclass(frozen=True)
class Reservation:
    estimated_cost_usd: float


_active: Optional[Budget] = None
_active_lock = threading.Lock()


@contextmanager
def spending_limit(budget: Budget) -> Iterator[Budget]:
    """Make `budget` the one every model call in this process is checked against."""
    global _active
    with _active_lock:
        if _active is not None:
            raise RuntimeError("a budget is already active in this process")
        _active = budget
    try:
        yield budget
    finally:
        with _active_lock:
            _active = None


def active_budget() -> Optional[Budget]:
    return _active


_scoped: contextvars.ContextVar[tuple[Budget, ...]] = contextvars.ContextVar("promptops_budgets", default=())


@contextmanager
def request_limits(*budgets: Budget) -> Iterator[tuple[Budget, ...]]:
    """Check every model call made in this context (and contexts copied from it) against `budgets` too."""
    token = _scoped.set(_scoped.get() + budgets)
    try:
        yield budgets
    finally:
        _scoped.reset(token)


def active_budgets() -> tuple[Budget, ...]:
    """The process budget, if any, then the budgets of the current request, session and key."""
    return ((_active,) if _active is not None else ()) + _scoped.get()


def admit_all(budgets: tuple[Budget, ...], estimated_cost_usd: float) -> list[tuple[Budget, "Reservation"]]:
    """Reserve one call in every budget, or in none: a refusal releases what was already reserved."""
    reserved: list[tuple[Budget, Reservation]] = []
    for budget in budgets:
        try:
            reserved.append((budget, budget.admit(estimated_cost_usd)))
        except BudgetExhausted as exc:
            exc.budget = budget  # which cap refused: the runtime words a session cap and a loop guard differently
            for admitted, reservation in reserved:
                admitted.settle(reservation, None, sent=False)
            raise
    return reserved
