"""The DSPy program of a prompt or agent, one agent task's tool calls and their approvals."""

from __future__ import annotations

from promptops.program._approval import Approval, ApprovalRequest, Approver, ask_in_terminal
from promptops.program._program import PromptProgram, SharedPrefixJSONAdapter, build_program, prediction_values, react_step_format
from promptops.program._tools import TaskRun, ToolCall, running

__all__ = ["Approval", "ApprovalRequest", "Approver", "PromptProgram", "SharedPrefixJSONAdapter", "TaskRun", "ToolCall", "ask_in_terminal", "build_program", "prediction_values", "react_step_format", "running"]
