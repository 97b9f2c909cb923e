"""`GuardedProgram`: a loaded prompt that is safe to put in front of users.

One request goes: input checks → rate limit → for each target (the prompt's model, then each
fallback) while its circuit breaker allows → up to 1 + `output.retries` attempts, each a model
call under the request's loop guard, the per-call timeout and the session and key cost caps →
the first answer that fits the output fields. Every refusal is a typed `GuardrailError`; every
step is a decision in the request's trace.

With `output.min_confidence`, an answer that fits but whose least sure label is less probable
than that is returned as a `NeedsReview` (the answer, held for a person) instead of a prediction.
An answer without a reported confidence for a label field (a hosted model that gives no
logprobs, grammar decoding) goes to review too: nothing vouches for it. Review is not a failure:
the model is not asked again (a retry at a higher temperature is no surer) and its breaker
counts a success.

Caps are enforced before a call leaves, through the same budgets the optimizer uses
(`promptops.models._budget`): a call is refused when its high estimate would break a cap, so a priced
model never exceeds it, and a model without a price exceeds it by at most one call.
"""

from __future__ import annotations

import contextvars
import hashlib
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from promptops.models import Budget, BudgetExhausted, request_limits
from promptops.errors import (
    CircuitOpen,
    CostCapReached,
    GuardrailError,
    InputRejected,
    InvalidOutput,
    LoopGuardTripped,
    ModelCallFailed,
    PromptopsError,
    RateLimited,
)
from promptops.versioning import ServedVersion
from promptops.runtime import _limits as limits

# Calls run here when they have a timeout, so a hung model call can be abandoned. An abandoned call
# still holds its thread until it ends: a local generation finishes in the background, a hosted
# request waits for the client's own timeout (`params: {timeout: N}` in the model bounds it).
_CALLS = ThreadPoolExecutor(max_workers=32, thread_name_prefix="promptops-call")
# The user key of the request in progress in this thread (or task), when given per call.
_REQUEST_KEY: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("promptops_request_key", default=None)


@dataclass
class Target:
    """One way to answer: a version of the prompt on a model, with its own circuit breaker."""

    label: str
    served: ServedVersion
    model_id: str
    cache: bool
    breaker: limits.Breaker
    _program: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def program(self) -> Any:
        with self._lock:
            if self._program is None:
                from promptops.program import build_program

                # Retries are the guardrails' to make (counted, traced); the provider client makes none of its own.
                self._program = build_program(self.served.prompt, model=self.model_id, cache=self.cache, num_retries=0)
            return self._program


@dataclass(frozen=True)
class Answer:
    """What a request returned and how it got there (for the trace, replay and tests)."""

    outputs: dict[str, Any]
    target: str
    version: str
    commit: Optional[str]
    model: str
    attempt: int  # 0 for the first try; a retry's rollout id otherwise
    fallback: bool
    config: dict[str, Any] = field(default_factory=dict)  # the LM overrides of this attempt, for an exact replay
    confidence_by_field: Optional[dict[str, float]] = None  # probability of each chosen label; None when the model reported none


@dataclass(frozen=True)
class NeedsReview:
    """What a request returns instead of a prediction when its answer is not sure enough to act on.

    `answer` is what the model said; `confidence` is its least sure field's probability
    (`least_sure_field`), None when the model reported none for it; `threshold` is the prompt's
    `guardrails.output.min_confidence`. Record the reviewer's verdict with
    `promptops.record_feedback(review.trace_id, correct=..., expected=...)`.
    """

    answer: Answer
    confidence_by_field: dict[str, float]
    threshold: float
    least_sure_field: Optional[str]
    confidence: Optional[float]
    trace_id: Optional[str] = None

    @property
    def outputs(self) -> dict[str, Any]:
        return self.answer.outputs

    @property
    def reason(self) -> str:
        """One sentence, e.g. "intent is 0.410 sure, below guardrails.output.min_confidence 0.6"."""
        field_name = self.least_sure_field or "the answer"
        if self.confidence is None:
            return f"{field_name} has no reported confidence to compare with guardrails.output.min_confidence {self.threshold:g}"
        return f"{field_name} is {self.confidence:.3f} sure, below guardrails.output.min_confidence {self.threshold:g}"


@dataclass
class RequestRecord:
    """The decisions and spend of one request, filled in as it runs."""

    decisions: list[dict[str, Any]] = field(default_factory=list)
    model_calls: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    answer: Optional[Answer] = None
    review: Optional[NeedsReview] = None  # the answer was held for review instead of returned
    task: Optional[Any] = None  # an agent's TaskRun: its tool calls, every attempt's
    steps: int = 0  # an agent's loop steps, every attempt's

    def decide(self, decision: str, **details: Any) -> None:
        self.decisions.append({"decision": decision, **details})

    def add(self, meter: Any) -> None:
        self.model_calls += meter.model_calls
        self.cache_hits += meter.cache_hits
        self.input_tokens += meter.input_tokens
        self.output_tokens += meter.output_tokens
        self.cost_usd += meter.cost_usd or 0.0


class GuardedProgram:
    """What `promptops.load()` returns: call it with the prompt's input fields, get a `dspy.Prediction`
    (or, under `guardrails.output.min_confidence`, a `NeedsReview` for an answer not sure enough).

    One instance is one session (its cost cap); `key` identifies the user for the per-key cap and
    rate limit (only its hash is traced). A service loads once per process and names the user per
    call, `program(text=..., key=user_id)` (unless the prompt has an input field called `key`);
    nothing is read from git per request. Not a DSPy module: compose `.program` for that.
    """

    def __init__(self, served: ServedVersion, *, model: Optional[str] = None, cache: bool = True, key: Optional[str] = None,
                 arm: Optional[str] = None, trace: bool = True, approve: Optional[Any] = None):
        self.served = served
        self.approve = approve  # an agent's approver for `approval: required` tools; None denies them all
        self.prompt = served.prompt
        self.name = served.prompt.name
        self.guardrails = served.prompt.guardrails
        self.key = key
        self.arm = arm
        self.trace = trace
        self.cache = cache
        self.model_override = model
        self.session = Budget(max_cost_usd=self.guardrails.cost_cap.session_usd)
        self.last_trace_id: Optional[str] = None
        self.last_record: Optional[RequestRecord] = None
        self._targets: Optional[list[Any]] = None
        self._targets_lock = threading.Lock()

    # --- the public surface --------------------------------------------------------------

    @property
    def program(self) -> Any:
        """The primary target's plain DSPy program (no guardrails), e.g. to compose in a larger module."""
        return self._resolved_targets()[0].program

    @property
    def request_key(self) -> Optional[str]:
        """The user of the request in progress: the call's `key`, else the one given to `load`."""
        key = _REQUEST_KEY.get()
        return self.key if key is None else key

    @property
    def key_hash(self) -> Optional[str]:
        key = self.request_key
        return hashlib.sha256(key.encode()).hexdigest()[:16] if key is not None else None

    @property
    def spent_usd(self) -> float:
        return self.session.spent_usd

    def __call__(self, **inputs: Any) -> Any:
        from promptops.runtime import _tracing as tracing

        key = None
        if "key" in inputs and "key" not in {spec.name for spec in self.prompt.inputs}:
            key = inputs.pop("key")
            if key is not None and not isinstance(key, str):
                raise InputRejected(f"{self.name}: key must be a string naming the user, not {type(key).__name__}")
        token = _REQUEST_KEY.set(key)
        try:
            record = RequestRecord()
            self.last_record = record
            with tracing.traced_request(self, inputs, record, enabled=self.trace) as trace, self._task(record, trace):
                try:
                    prediction = self._answer(inputs, record)
                except GuardrailError as exc:
                    exc.trace_id = trace.trace_id
                    self.last_trace_id = trace.trace_id
                    raise
            self.last_trace_id = trace.trace_id
            if isinstance(prediction, NeedsReview):
                return replace(prediction, trace_id=trace.trace_id)
            return prediction
        finally:
            _REQUEST_KEY.reset(token)

    def _task(self, record: RequestRecord, trace: Any) -> Any:
        """For an agent, the request's `TaskRun` (approver, trace id) that its tool calls join; else nothing."""
        from contextlib import nullcontext

        if not self.prompt.is_agent:
            return nullcontext()
        from promptops.program import TaskRun, running
        from promptops.runtime._tracing import observe_tool_call

        record.task = TaskRun(prompt=self.name, approver=self.approve, trace_id=trace.trace_id, observer=observe_tool_call)
        return running(record.task)

    # --- one request -----------------------------------------------------------------------

    def _answer(self, inputs: dict[str, Any], record: RequestRecord) -> Any:
        checked = self._check_inputs(inputs, record)
        self._take_rate_token(record)
        request = self._request_budget()
        budgets = [request, self.session]
        key_budget = None
        if self.request_key is not None:
            key_budget = limits.key_budget(self.name, self.request_key, self.guardrails.cost_cap.per_key_usd)  # type: ignore[arg-type]
            budgets.append(key_budget)
        attempts = 1 + self.guardrails.output.retries
        failure: Optional[GuardrailError] = None
        for index, target in enumerate(self._resolved_targets()):
            if target is None:
                continue
            if not target.breaker.allow():  # once per target: a half-open breaker lets one request probe
                record.decide("circuit_open", target=target.label, retry_in_s=round(target.breaker.retry_in_s, 3))
                if failure is None:  # a model error or bad answer seen earlier says more than "resting"
                    failure = CircuitOpen(f"{self.name}: {target.label} failed {target.breaker.failures} times in a row;"
                                          f" it rests {target.breaker.retry_in_s:.0f} s more (guardrails.circuit_breaker)")
                continue
            for attempt in range(attempts):
                try:
                    prediction, answer = self._attempt(target, index, attempt, checked, budgets, record)
                except BudgetExhausted as exc:
                    target.breaker.release()  # refused before the model was asked: no verdict on the model
                    raise self._cap_error(exc, request, key_budget, failure) from None
                except _Invalid as exc:
                    record.decide("invalid_output", target=target.label, attempt=attempt, problem=exc.problem)
                    failure = InvalidOutput(f"{self.name}: {target.label} answered outside the output fields"
                                            f" {attempt + 1} time(s): {exc.problem}")
                    if attempt == attempts - 1:
                        target.breaker.failed()  # it answers, but never usably: as bad as down
                    continue
                except _Failed as exc:
                    target.breaker.failed()
                    record.decide(exc.kind, target=target.label, attempt=attempt, problem=exc.problem)
                    failure = ModelCallFailed(f"{self.name}: {target.label} failed: {exc.problem}")
                    if target.breaker.state == limits.OPEN:
                        break
                    continue
                target.breaker.succeeded()
                record.answer = answer
                record.decide("answered", target=target.label, attempt=attempt)
                review = self._review(answer, target)
                if review is not None:
                    record.review = review
                    details = {"threshold": review.threshold, "field": review.least_sure_field, "confidence": review.confidence}
                    record.decide("needs_review", **{key: value for key, value in details.items() if value is not None})
                    return review
                return prediction
        if failure is None:
            failure = ModelCallFailed(f"{self.name}: no target could be called")
        raise failure

    def _request_budget(self) -> Budget:
        """The loop guard of one request: model calls (an agent's steps and output call, per attempt) and an agent's task cost."""
        if not self.prompt.is_agent:
            return Budget(max_model_calls=self.guardrails.max_calls_per_request)
        loop = self.prompt.loop
        calls = loop.max_model_calls or (loop.max_steps + 1) * (1 + self.guardrails.output.retries)
        return Budget(max_model_calls=calls, max_cost_usd=loop.max_cost_usd)

    def _review(self, answer: Answer, target: Target) -> Optional[NeedsReview]:
        """The answer held for review when its least sure label is below `output.min_confidence`, else None."""
        from promptops.models import least_sure

        threshold = self.guardrails.output.min_confidence
        if threshold is None:
            return None
        least_sure_field, confidence = least_sure(answer.confidence_by_field, target.served.prompt.label_fields)
        if confidence is not None and confidence >= threshold:
            return None
        return NeedsReview(answer, dict(answer.confidence_by_field or {}), threshold, least_sure_field, confidence)

    def _attempt(self, target: Target, index: int, attempt: int, inputs: dict[str, Any], budgets: list[Budget],
                 record: RequestRecord) -> tuple[Any, Answer]:
        from promptops.models import metering
        from promptops.program import prediction_values

        config: dict[str, Any] = {}
        if attempt:
            # A retry must not be answered by the cache, nor repeat a deterministic answer.
            config = {"rollout_id": attempt,
                      "temperature": max(target.served.prompt.model.temperature, self.guardrails.output.retry_temperature)}
        timeout_s = self.prompt.loop.timeout_s if self.prompt.is_agent else self.guardrails.timeout_s

        def call() -> tuple[Any, Any]:
            with metering() as meter, request_limits(*budgets):
                try:
                    return target.program.answer(inputs, config), meter
                finally:
                    record.add(meter)

        try:
            if timeout_s is None:
                prediction, meter = call()
            else:
                future = _CALLS.submit(contextvars.copy_context().run, call)
                try:
                    prediction, meter = future.result(timeout=timeout_s)
                except FutureTimeout:
                    future.cancel()  # still queued behind hung calls: it must not run (and spend) later
                    raise
        except BudgetExhausted:
            raise
        except FutureTimeout:
            raise _Failed("timeout", f"no answer within {timeout_s:g} s (guardrails.timeout_s)") from None
        except Exception as exc:
            from dspy.utils.exceptions import AdapterParseError

            if isinstance(exc, AdapterParseError):
                raise _Invalid(_one_line(exc)) from None
            raise _Failed("model_error", _one_line(exc)) from None
        record.steps += getattr(prediction, "steps", 0) or 0
        values = prediction_values(target.served.prompt, prediction)
        problem = target.served.prompt.check_example(values, inputs=False)
        if problem:
            raise _Invalid(problem)
        return prediction, Answer(values, target.label, target.served.label, target.served.commit, target.model_id, attempt, index > 0,
                                  config, meter.confidence)

    # --- checks before any call ----------------------------------------------------------

    def _check_inputs(self, inputs: dict[str, Any], record: RequestRecord) -> dict[str, Any]:
        from pydantic import ValidationError

        rules = self.guardrails.input
        names = [spec.name for spec in self.prompt.inputs]
        unknown = sorted(set(inputs) - set(names))
        missing = [name for name in names if name not in inputs]
        problem = None
        if unknown:
            problem = f"unknown input field {unknown[0]!r}; {self.name} takes {', '.join(names)}"
        elif missing:
            problem = f"missing input field {missing[0]!r}"
        checked: dict[str, Any] = {}
        for spec in self.prompt.inputs:
            if problem:
                break
            try:
                value = spec.adapter.validate_python(inputs[spec.name])
            except ValidationError as exc:
                problem = f"input {spec.name!r} is not a valid {spec.type}: {exc.errors()[0]['msg']}"
                break
            text = value if isinstance(value, str) else None
            if text is not None and not text.strip() and _required(spec):
                problem = (f"input {spec.name!r} is empty: give it text (only a field declared `nullable: true`"
                           " may be left empty)")
                break
            if text is not None and rules.max_chars is not None and len(text) > rules.max_chars:
                problem = f"input {spec.name!r} has {len(text)} characters, more than guardrails.input.max_chars={rules.max_chars}"
            for pattern in rules.deny:
                if problem is None and text is not None and re.search(pattern, text):
                    problem = f"input {spec.name!r} matches the deny pattern {pattern!r} (guardrails.input.deny)"
            checked[spec.name] = value
        if problem:
            record.decide("input_rejected", problem=problem)
            raise InputRejected(f"{self.name}: {problem}")
        record.decide("input_ok")
        return checked

    def _take_rate_token(self, record: RequestRecord) -> None:
        rule = self.guardrails.rate_limit
        if rule is None:
            return
        wait_s = limits.bucket_for(self.name, self.request_key or "", rule.per_minute, rule.burst).take()
        if wait_s is not None:
            record.decide("rate_limited", retry_after_s=round(wait_s, 3))
            who = "this user key" if self.request_key is not None else "this process"
            raise RateLimited(f"{self.name}: {who} is over {rule.per_minute:g} requests a minute (guardrails.rate_limit);"
                              f" retry in {wait_s:.1f} s", retry_after_s=wait_s)

    def _cap_error(self, exc: BudgetExhausted, request: Budget, key_budget: Optional[Budget],
                   failure: Optional[GuardrailError]) -> Exception:
        budget = getattr(exc, "budget", None)
        caps = self.guardrails.cost_cap
        if budget is request and self.prompt.is_agent:
            loop = self.prompt.loop
            if exc.cap == "max_cost_usd":
                return CostCapReached(f"{self.name}: this task spent ${request.spent_usd:.6f}; the next model call would pass"
                                      f" its cap of ${loop.max_cost_usd:g} (agent.max_cost_usd)")
            return LoopGuardTripped(f"{self.name}: the task used its {request.max_model_calls} model calls"
                                    f" (agent.max_model_calls, by default max_steps + 1 per attempt) without an acceptable answer")
        if budget is request:
            why = f"; last problem: {failure}" if failure else ""
            return LoopGuardTripped(f"{self.name}: the request used its {request.max_model_calls} model calls"
                                    f" (guardrails.max_calls_per_request) without an acceptable answer{why}")
        if budget is self.session:
            return CostCapReached(f"{self.name}: this session spent ${self.session.spent_usd:.6f}; the next call would pass"
                                  f" its cap of ${caps.session_usd:g} (guardrails.cost_cap.session_usd)")
        if budget is key_budget and key_budget is not None:
            return CostCapReached(f"{self.name}: this user key spent ${key_budget.spent_usd:.6f}; the next call would pass"
                                  f" its cap of ${caps.per_key_usd:g} (guardrails.cost_cap.per_key_usd)")
        return exc  # the process budget of an optimization: it stops the job, not one request

    # --- targets ---------------------------------------------------------------------------

    def _resolved_targets(self) -> list[Any]:
        """The prompt on its model, then each fallback step; a step that cannot be resolved is None."""
        with self._targets_lock:
            if self._targets is None:
                primary_model = self.model_override or self.prompt.model.id
                targets: list[Any] = [self._target(self.served, primary_model)]
                for step in self.guardrails.fallback:
                    targets.append(self._fallback_target(step, primary_model))
                self._targets = targets
            return self._targets

    def _target(self, served: ServedVersion, model_id: str) -> Target:
        from promptops.models import check_model_id, check_model_params

        check_model_id(model_id)
        check_model_params(served.prompt.model.model_copy(update={"id": model_id}))  # before a call, not as its failure
        breaker_rule = self.guardrails.circuit_breaker
        breaker = limits.breaker_for(self.name, model_id, breaker_rule.failures, breaker_rule.cooldown_s)
        return Target(f"{served.label} on {model_id}", served, model_id, self.cache, breaker)

    def _fallback_target(self, step: Any, primary_model: str) -> Optional[Target]:
        from promptops.versioning import previous_commit, served_version

        if step.model:
            return self._target(self.served, step.model)
        ref = step.version
        if ref == "previous":
            try:
                ref = previous_commit(self.name, self.served.channel or "production")
            except PromptopsError:
                ref = None  # no repository here: no channel history to go back in
            if ref is None:
                return None  # nothing served before: the step is skipped, as documented
        try:
            served = served_version(f"{self.name}@{ref}")
        except PromptopsError:
            return None
        return self._target(served, self.model_override or served.prompt.model.id)


def _required(spec: Any) -> bool:
    """A text input that must say something: a string field not declared `nullable` (which may be empty or None)."""
    return spec.type == "string" and not spec.nullable


class _Invalid(Exception):
    def __init__(self, problem: str):
        self.problem = problem
        super().__init__(problem)


class _Failed(Exception):
    def __init__(self, kind: str, problem: str):
        self.kind, self.problem = kind, problem
        super().__init__(problem)


def _one_line(exc: BaseException) -> str:
    from promptops._secrets import redact

    text = redact(str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__
