"""Action approval: a tool marked `approval: required` runs only after an approver says yes.

An approver is any callable taking an `ApprovalRequest` and answering with an `Approval`
(approve, deny, or edit the arguments) or a plain bool. `promptops.load(..., approve=callback)`
installs one; without one every such call is denied, in serving and in evals alike, so an
unattended agent never takes a high-stakes action. A denial is not an error: it becomes the
step's observation, and the agent can tell the user or try something else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional, Union

Decision = Literal["approve", "deny", "edit"]


@dataclass(frozen=True)
class ApprovalRequest:
    """What an approver is asked: which tool, with which arguments, for which request."""

    prompt: str
    tool: str
    args: dict[str, Any]
    step: int
    trace_id: Optional[str] = None

    def describe(self) -> str:
        """`freeze_card(customer_id='C-1001')`, as a person reads it."""
        arguments = ", ".join(f"{name}={value!r}" for name, value in self.args.items())
        return f"{self.tool}({arguments})"


@dataclass(frozen=True)
class Approval:
    """An approver's answer; `args` are the arguments to run with when the decision is "edit"."""

    decision: Decision
    args: Optional[dict[str, Any]] = None
    reason: str = ""
    approver: str = field(default="callback")

    @classmethod
    def approve(cls, reason: str = "") -> "Approval":
        return cls("approve", reason=reason)

    @classmethod
    def deny(cls, reason: str = "") -> "Approval":
        return cls("deny", reason=reason)

    @classmethod
    def edit(cls, args: dict[str, Any], reason: str = "") -> "Approval":
        return cls("edit", args=dict(args), reason=reason)


Approver = Callable[[ApprovalRequest], Union[Approval, bool]]


def deny_all(request: ApprovalRequest) -> Approval:
    """The default approver: nobody was asked, so nothing that needs approval runs."""
    return Approval("deny", reason="no approver was given (promptops.load(approve=...) or promptops run --approve ask)",
                    approver="default")


def decide(approver: Optional[Approver], request: ApprovalRequest) -> Approval:
    """The approver's answer as an `Approval`; an approver that raises or answers nonsense denies."""
    if approver is None:
        return deny_all(request)
    try:
        answer = approver(request)
    except Exception as exc:  # an approver that breaks must not let the action through
        return Approval("deny", reason=f"the approver raised {type(exc).__name__}: {exc}"[:300])
    if isinstance(answer, bool):
        return Approval("approve" if answer else "deny")
    if isinstance(answer, Approval) and answer.decision in ("approve", "deny"):
        return answer
    if isinstance(answer, Approval) and answer.decision == "edit" and isinstance(answer.args, dict):
        return answer
    return Approval("deny", reason=f"the approver answered {answer!r}, not an Approval or a bool"[:300])


def ask_in_terminal(request: ApprovalRequest) -> Approval:
    """`promptops run --approve ask`: ask the person at the terminal; [y]es, [n]o or [e]dit the arguments as JSON."""
    import json

    import click

    click.echo(f"The agent wants to run {request.describe()}, which needs approval.", err=True)
    choice = click.prompt("Approve? [y]es, [n]o, [e]dit the arguments", type=click.Choice(["y", "n", "e"]),
                          default="n", err=True)
    if choice == "y":
        return Approval("approve", approver="terminal")
    if choice == "n":
        return Approval("deny", reason="denied at the terminal", approver="terminal")
    while True:
        text = click.prompt("Arguments as a JSON object", default=json.dumps(request.args), err=True)
        try:
            args = json.loads(text)
        except json.JSONDecodeError as exc:
            click.echo(f"not JSON: {exc.msg}", err=True)
            continue
        if isinstance(args, dict):
            return Approval("edit", args=args, approver="terminal")
        click.echo("give a JSON object, e.g. {\"customer_id\": \"C-1001\"}", err=True)
