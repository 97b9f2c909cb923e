"""What `promptops optimize` shows: a live view while it searches, then the front and the winner.

The live view is bound to the terminal's stderr when it starts: DSPy's optimizers print while
they compile, and that chatter is captured, but the view must keep drawing.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, Optional

from rich.console import Console, Group
from rich.markup import escape
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from promptops.optimizer import OptimizationResult, Progress


@contextmanager
def live_view(*, enabled: bool = True) -> Iterator[Optional[Callable[["Progress"], None]]]:
    """A callback drawing trial n/N, best per objective, spend and calls, or None when disabled."""
    if not enabled:
        yield None
        return
    console = Console(file=sys.stderr)
    if not console.is_terminal:  # a log file or a CI job: a line per step, never a frame redrawn in place
        yield _line_per_step(console)
        return
    bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)
    task = bar.add_task("trials", total=None)
    status = Text()

    live = Live(Group(bar, status), console=console, refresh_per_second=4, transient=False)

    def update(progress: "Progress") -> None:
        if progress.n_trials:
            bar.update(task, completed=progress.finished + progress.pruned, total=progress.n_trials,
                       description=f"{progress.study} trials")
        status.plain = ""
        status.append(_status_lines(progress))
        if not live.is_started:  # drawn once the study runs: a mistake found before stays one line on stderr
            live.start(refresh=True)

    try:
        yield update
    finally:
        live.stop()


def _line_per_step(console: Console) -> Callable[["Progress"], None]:
    """Progress as plain lines: each new stage of a trial, each finished trial with the spend so far."""
    said: dict[str, object] = {}

    def update(progress: "Progress") -> None:
        step = f"trial {progress.trial}: {progress.stage}" if progress.trial is not None else progress.stage
        if step and step != said.get("step"):
            said["step"] = step
            console.print(step, highlight=False, soft_wrap=True)
        if progress.last and progress.last != said.get("last"):
            said["last"] = progress.last
            spend = f"spent ${progress.spent_usd:.6f} · {progress.model_calls} model calls"
            console.print(f"{progress.last} ({progress.finished} complete, {progress.pruned} pruned, "
                          f"{progress.failed} failed; {spend})", highlight=False, soft_wrap=True)

    return update


def _status_lines(progress: "Progress") -> str:
    lines = []
    if progress.trial is not None:
        lines.append(f"trial {progress.trial}: {progress.stage}")
    elif progress.stage:
        lines.append(progress.stage)
    counts = f"{progress.finished} complete, {progress.pruned} pruned, {progress.failed} failed"
    lines.append(counts)
    if progress.best:
        lines.append("best so far: " + ", ".join(f"{name} {_value(name, value)}" for name, value in progress.best.items()))
    spend = f"spent ${progress.spent_usd:.6f}" + (f" of ${progress.max_cost_usd:g}" if progress.max_cost_usd else "")
    calls = f"{progress.model_calls} model calls" + (f" of {progress.max_model_calls}" if progress.max_model_calls else "")
    lines.append(f"{spend} · {calls}")
    if progress.last:
        lines.append(progress.last)
    lines.extend(progress.workers)
    return "\n".join(lines)


def _value(name: str, value: float) -> str:
    return f"${value:.6f}" if name == "cost_usd" else f"{value:.4g}"


def _param(params: dict, key: str) -> str:
    value = params.get(key, 0 if key in ("demos", "instruction") else "")
    if key == "calibrate":
        return "file" if value is None else ("yes" if value else "no")
    return str(value)


def _configuration(params: dict, dimensions: list[str]) -> str:
    """`local/gemma3-270m · bootstrap · 8 demos · instruction 0 · calibrated`: a trial's settings in words."""
    words = []
    for key in dimensions:
        value = _param(params, key)
        if key == "demos":
            words.append(f"{value} demos")
        elif key == "instruction":
            words.append(f"instruction {value}")
        elif key == "calibrate":
            words.append({"yes": "calibrated", "no": "uncalibrated", "file": "file's calibration"}[value])
        elif key == "temperature":
            words.append(f"temperature {value}")
        else:
            words.append(value)
    return " · ".join(words)


def result(outcome: "OptimizationResult") -> None:
    console = Console()
    study = outcome.study
    names = list(study.objectives)
    if study.concluded_by is not None:
        console.print(f"[bold]{study.study}[/]: this worker ({study.worker}) is done; worker {study.concluded_by} concludes the"
                      f" study (scores the front on test, writes the winner). The study spent ${study.spent_usd:.6f} in"
                      f" {study.model_calls} model calls; MLflow run {study.parent_run_id}", highlight=False)
        return
    for failure in study.worker_failures:
        console.print(f"[yellow]{escape(failure)}[/]", highlight=False)
    counts = {state: sum(t.state == state for t in study.trials) for state in ("COMPLETE", "PRUNED", "FAIL")}
    console.print(
        f"[bold]{study.study}[/]: {counts['COMPLETE']} complete, {counts['PRUNED']} pruned, {counts['FAIL']} failed trials;"
        f" spent ${study.spent_usd:.6f} in {study.model_calls} model calls, {study.wall_time_s:.0f} s",
        highlight=False,
    )
    if study.stopped_by:
        console.print(f"[yellow]stopped early[/]: {study.stopped_by}", highlight=False)
    from rich import box

    # The listings' style (no side borders, collapsed padding) so that at 80 columns nothing is cut: a cost or an
    # optimizer's name is never shortened to `$0.000…` or `bootst…`; a long model name folds instead.
    table = Table(title="Pareto front (dev)", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True)
    # The configuration as one wrapping cell (model whole, then what else the points differ in), so the numbers keep
    # their width at 80 columns.
    dimensions = [key for key in ("model", "optimizer", "demos", "instruction", "calibrate", "temperature")
                  if len({str(point.params.get(key, "")) for point in study.front}) > 1 or key == "model"]
    table.add_column("trial", justify="right", no_wrap=True)
    table.add_column("configuration", overflow="fold")
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
    for point in study.front:
        marker = " ★" if study.winner and point.number == study.winner.number else ""
        marker += " base" if point.number == study.baseline_trial else ""  # the prompt file as committed
        table.add_row(f"{point.number}{marker}", _configuration(point.params, dimensions),
                      *[_value(name, point.values[name]) for name in names])
    console.print(table)
    test = outcome.test
    if test is not None:
        winner = "not measured" if test.winner_score is None else f"{test.winner_score:.3f}"
        reference = "not measured" if test.reference_score is None else f"{test.reference_score:.3f}"
        console.print(f"test ({test.n} examples) {test.metric}: winner {winner}, {test.reference_label} {reference}", highlight=False)
        if test.verdict is not None:
            console.print(f"gate: {escape(test.verdict.line())}", highlight=False, soft_wrap=True)
        if test.note:
            console.print(f"[yellow]{escape(test.note)}[/]", highlight=False)
    if outcome.adopted is not None:
        console.print(escape(outcome.adopted.note), highlight=False, soft_wrap=True)
    console.print(f"MLflow run {study.parent_run_id} (the Pareto plot is its pareto_front.png)", highlight=False)
    commands = next_commands(outcome)
    if commands:
        console.print("next:", highlight=False)
        for command in commands:
            console.print(f"  {command}", highlight=False, soft_wrap=True)


def next_commands(outcome: "OptimizationResult") -> list[str]:
    """What to run after a written winner: see what changed, then promote it through the gate.

    The winner is compared with production when there is one, else with the version the study
    started from (the one before the winner's); `NAME@production` does not resolve before a promotion.
    """
    adopted = outcome.adopted
    if adopted is None or not adopted.version:
        return []
    name = outcome.study.winner_prompt.name if outcome.study.winner_prompt else outcome.study.experiment
    number = adopted.version.removeprefix("v")
    if outcome.test is not None and outcome.test.reference_label.startswith("production"):
        look = f"promptops diff {name}@production {name}@candidate"
    elif number.isdigit() and int(number) > 1:
        look = f"promptops diff {name}@v{int(number) - 1} {name}@candidate"
    else:  # the winner is the first committed version: nothing to compare it with
        look = f"promptops show {name}@candidate"
    return [look, f"promptops promote {name} --version {adopted.version}"]


def as_json(outcome: "OptimizationResult") -> dict:
    """The result as plain data for `--json` and scripts."""
    import dataclasses

    study = outcome.study
    data = dataclasses.asdict(study)
    data.pop("winner_prompt", None)
    data["winner_prompt_hash"] = study.winner_prompt.content_hash if study.winner_prompt else None
    data["test"] = dataclasses.asdict(outcome.test) if outcome.test else None
    data["adopted"] = dataclasses.asdict(outcome.adopted) if outcome.adopted else None
    data["next"] = next_commands(outcome)
    return data


def trial_table(listing) -> None:
    """`promptops trials`: one line per trial at 80 columns: its settings in words (a wrapping cell), then the numbers whole."""
    from rich import box

    console = Console()
    names = list(listing.objectives)
    dimensions = [key for key in ("model", "optimizer", "demos", "instruction", "calibrate", "temperature")
                  if len({str(trial.params.get(key, "")) for trial in listing.trials}) > 1 or key in ("model", "optimizer")]
    console.print(f"[bold]{escape(listing.study)}[/]: {len(listing.trials)} trials ({escape(listing.storage)})", highlight=False)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("trial", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("configuration", overflow="fold")
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
    for column in ("dev n", "calls"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("run", no_wrap=True)
    for trial in listing.trials:
        state = {"COMPLETE": "done", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "queued"}.get(
            trial.state, trial.state.lower())
        if trial.repeat_of is not None:
            state += f" =#{trial.repeat_of}"
        params = {**trial.params, **({"optimizer": "none"} if trial.baseline else {})}
        label = f"{trial.number}" + (" base" if trial.baseline else "")
        table.add_row(label, state, _configuration(params, dimensions),
                      *[_value(name, trial.values[name]) if name in trial.values else "-" for name in names],
                      str(trial.dev_n or "-"), str(trial.model_calls), (trial.run_id or "-")[:8])
    console.print(table, highlight=False)
    for trial in listing.trials:
        if trial.stopped_by:
            console.print(f"trial {trial.number} failed: {escape(trial.stopped_by)}", highlight=False, soft_wrap=True)
