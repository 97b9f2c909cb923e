"""An agent's tools: resolved from the prompt file, and called within one task's rules.

`resolve_tools` imports each `module:function` (from the project root), takes its argument
schema and description from the function the way DSPy's `dspy.Tool` does, and applies the
file's overrides; a reference that does not import, or an override naming an argument the
function does not take, is a `ToolError` that names the place in the file.

During a task every tool call goes through `TaskRun.call`: the per-tool `max_calls`, the
approval of a tool marked `approval: required`, the tool's `timeout_s`, and a record of the
call (arguments, approval, result or error, latency) for the trace, the eval's trajectory
metrics and replay. DSPy's ReAct turns what a tool raises into the step's observation, so a
failing tool never ends the task; a refusal (denied, over `max_calls`) is an observation too.
In a replay the recorded results are returned instead and no tool runs.
"""

from __future__ import annotations

import contextvars
import copy
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Optional

from promptops._secrets import error_line
from promptops.artifact import ResolvedTool
from promptops.program._approval import ApprovalRequest, Approver, decide

# Tools run here so a hung one can be abandoned at its timeout (its thread ends when the function returns).
_TOOL_THREADS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="promptops-tool")
_TASK: contextvars.ContextVar[Optional["TaskRun"]] = contextvars.ContextVar("promptops_agent_task", default=None)
MAX_RESULT_CHARS = 2_000  # what a call record keeps of a tool's result (the model saw all of it)


# --- one task ----------------------------------------------------------------------------------


@dataclass
class ToolCall:
    """One tool call of a task, as the trace, the trajectory metrics and replay see it."""

    step: int
    name: str
    args: dict[str, Any]
    requires_approval: bool
    approval: Optional[str] = None  # "approved", "denied", "edited"; None when none was asked
    approver: Optional[str] = None
    approval_reason: str = ""
    requested_args: Optional[dict[str, Any]] = None  # what the model asked for, when an approver edited it
    executed: bool = False  # the function was called (it may still have raised)
    refused: Optional[str] = None  # why it was not run: "denied" or "max_calls"
    result: Optional[str] = None
    error: Optional[str] = None
    latency_s: float = 0.0
    replayed: bool = False  # the result came from a trace; nothing ran

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TaskRun:
    """The tool calls of one task, and what rules them: the approver, and recorded calls when replaying."""

    prompt: str
    approver: Optional[Approver] = None
    trace_id: Optional[str] = None
    recorded: Optional[list[dict[str, Any]]] = None  # a replay: these results are returned and no tool runs
    calls: list[ToolCall] = field(default_factory=list)
    steps: int = 0  # loop steps the program finished (a step that chose `finish` calls no tool)
    diverged: Optional[str] = None  # in a replay, the first call the trace did not have
    # Told of each call's approval, refusal and outcome as it happens (the service traces it on the tool's span);
    # the second argument says whether the call carries an approval decision to record once.
    observer: Optional[Callable[[ToolCall, bool], None]] = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def call(self, tool: ResolvedTool, args: dict[str, Any]) -> Any:
        with self._lock:
            record = ToolCall(len(self.calls), tool.name, dict(args), tool.requires_approval)
            self.calls.append(record)
            earlier = sum(1 for call in self.calls[:-1] if call.name == tool.name and call.refused != "max_calls")
        if self.recorded is not None:
            return self._replay(record)
        if tool.max_calls is not None and earlier >= tool.max_calls:
            record.refused = "max_calls"
            record.result = (f"Not done: {tool.name} may be called at most {tool.max_calls} time(s) per task (its max_calls);"
                             " use what it returned before.")
            self._annotate(record)
            return record.result
        if tool.requires_approval:
            approval = decide(self.approver, ApprovalRequest(self.prompt, tool.name, dict(args), record.step, self.trace_id))
            record.approver, record.approval_reason = approval.approver, approval.reason
            if approval.decision == "deny":
                record.approval, record.refused = "denied", "denied"
                why = f" ({approval.reason})" if approval.reason else ""
                record.result = (f"Not done: {tool.name} needs a person's approval and it was denied{why}. Do not call it"
                                 " again; tell the customer it needs approval.")
                self._annotate(record, approval_event=True)
                return record.result
            record.approval = "approved"
            if approval.decision == "edit":
                record.approval, record.requested_args = "edited", record.args
                record.args = dict(approval.args or {})
            self._annotate(record, approval_event=True)
        return self._execute(tool, record)

    def _execute(self, tool: ResolvedTool, record: ToolCall) -> Any:
        started = time.perf_counter()
        record.executed = True  # from here on the action may have happened, whatever it returns
        future = _TOOL_THREADS.submit(contextvars.copy_context().run, tool.function, **record.args)
        try:
            result = future.result(timeout=tool.timeout_s)
        except FutureTimeout:
            future.cancel()
            record.error = f"TimeoutError: no answer within {tool.timeout_s:g} s (tools[{tool.index}].timeout_s)"
        except Exception as exc:
            record.error = error_line(exc)
        record.latency_s = round(time.perf_counter() - started, 6)
        if record.error is not None:
            # The observation DSPy's ReAct would write, without its traceback: file paths and frames of the
            # service are no business of the model's, and a replay must read the same text.
            record.result = f"Execution error in {tool.name}: {record.error}"
            self._annotate(record)
            return record.result
        record.result = _result_text(result)
        self._annotate(record)
        return result

    def _annotate(self, record: ToolCall, *, approval_event: bool = False) -> None:
        if self.observer is not None:
            try:
                self.observer(record, approval_event)
            except Exception:  # an observer's hiccup (a tracing store down) must not fail the tool call
                pass

    def _replay(self, record: ToolCall) -> Any:
        position = record.step
        recorded = self.recorded[position] if self.recorded is not None and position < len(self.recorded) else None
        record.replayed = True
        if recorded is None or recorded.get("name") != record.name:
            had = recorded.get("name") if recorded else "no further call"
            self.diverged = self.diverged or f"step {position}: the model called {record.name}, the trace has {had}"
            record.refused = "not_recorded"
            record.result = f"Not done: this replay has no recorded result for {record.name} (the trace has {had})."
            return record.result
        for key in ("approval", "approver", "approval_reason", "requested_args", "executed", "refused", "result", "error",
                    "latency_s"):
            setattr(record, key, recorded.get(key, getattr(record, key)))
        if "args" in recorded and record.approval == "edited":
            record.args = dict(recorded["args"])
        self._annotate(record, approval_event=record.approval is not None)
        return record.result  # what the model read then: the result, the error's observation or the refusal


def current_task() -> Optional[TaskRun]:
    return _TASK.get()


@contextmanager
def running(task: Optional[TaskRun]) -> Iterator[Optional[TaskRun]]:
    """Make `task` the one this thread's (and its copied contexts') tool calls belong to; None changes nothing."""
    if task is None:
        yield None
        return
    token = _TASK.set(task)
    try:
        yield task
    finally:
        _TASK.reset(token)


def as_dspy_tool(tool: ResolvedTool) -> Any:
    """A `dspy.Tool` the ReAct loop can call; the call goes through the current task's rules."""
    import dspy

    def call(**kwargs: Any) -> Any:
        task = current_task()
        if task is None:  # called outside promptops' program (e.g. a test calling the tool): no rules, no record
            task = TaskRun(prompt="")
        return task.call(tool, kwargs)

    call.__name__ = tool.name
    return dspy.Tool(call, name=tool.name, desc=tool.description, args=copy.deepcopy(tool.args), arg_types=dict(tool.arg_types))


def _result_text(result: Any) -> str:
    from promptops._secrets import redact

    text = result if isinstance(result, str) else repr(result)
    return redact(text)[:MAX_RESULT_CHARS]

