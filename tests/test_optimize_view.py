"""What `promptops optimize` suggests next must run as printed: each command line parses and resolves in
the repository the study left, whether or not the prompt has a production version. The search is
replaced by a given winner and the scripted model `scripted/literal` answers (`decided_study`, in conftest)."""

from __future__ import annotations

import json
import shlex

from click.testing import CliRunner

import promptops
from promptops.versioning import read_channels
from promptops.cli import main

NAME = "banking_intent"


def suggested(output: str) -> list[str]:
    lines = output.splitlines()
    start = lines.index("next:")
    return [line.strip() for line in lines[start + 1:] if line.startswith("  promptops ")]


def run_each(commands: list[str]) -> None:
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "promptops"
        result = CliRunner().invoke(main, words[1:])
        assert result.exit_code == 0, (command, result.output)


def test_before_any_promotion_the_next_commands_compare_with_the_version_the_study_started_from(decided_study) -> None:
    base = promptops.load_prompt(NAME)
    decided_study(base.with_changes(description=base.description + " Tuned."))
    result = CliRunner().invoke(main, ["optimize", "tiny"])
    assert result.exit_code == 0, result.output
    commands = suggested(result.stdout)
    assert commands == [f"promptops diff {NAME}@v1 {NAME}@candidate", f"promptops promote {NAME} --version v2"]
    run_each(commands)  # the diff shows the change; the promote passes the gate (same answers) and moves production
    assert read_channels(NAME)["production"]["label"] == "v2"


def test_with_a_production_version_the_next_commands_compare_with_it(decided_study) -> None:
    base = promptops.load_prompt(NAME)
    promptops.promote(NAME)  # v1 to production
    decided_study(base.with_changes(description=base.description + " Tuned."))
    shown = json.loads(CliRunner().invoke(main, ["optimize", "tiny", "--json"]).stdout)
    assert shown["next"] == [f"promptops diff {NAME}@production {NAME}@candidate", f"promptops promote {NAME} --version v2"]
    run_each(shown["next"])
    assert read_channels(NAME)["production"]["label"] == "v2"


def test_off_a_terminal_the_live_view_is_a_line_per_step(capsys) -> None:
    """Issue 26: with output to a file the live view wrote nothing for 10 minutes; now each step is a line."""
    from promptops.optimizer import Progress
    from promptops.reports.optimize_view import live_view

    with live_view() as update:
        progress = Progress("promptops/tiny/1", 3)
        for stage in ("compiling (labeled, 1 demos, local/smollm2-135m)", "scoring on dev[:4]", "scoring on dev[:4]"):
            progress.trial, progress.stage = 0, stage
            update(progress)
        progress.finished, progress.model_calls, progress.spent_usd = 1, 12, 0.000042
        progress.last = "trial 0: accuracy 0.5, cost_usd 4.2e-05"
        update(progress)
        update(progress)
    assert capsys.readouterr().err.splitlines() == [
        "trial 0: compiling (labeled, 1 demos, local/smollm2-135m)",
        "trial 0: scoring on dev[:4]",
        "trial 0: accuracy 0.5, cost_usd 4.2e-05 (1 complete, 0 pruned, 0 failed; spent $0.000042 · 12 model calls)",
    ]


def test_the_front_table_fits_80_columns_with_costs_and_optimizers_whole(capsys, monkeypatch) -> None:
    """Issue 26: at 80 columns the front cut the cost to `$0.000…` and the optimizer to `bootst…`, and hid calibrate."""
    from promptops.optimizer import FrontPoint, OptimizationResult, StudyOutcome
    from promptops.reports import optimize_view

    monkeypatch.setenv("COLUMNS", "80")
    params = [("local/gemma3-270m", "bootstrap", 8, True), ("local/smollm2-135m", "random_search", 8, True),
              ("local/smollm2-135m", "none", 0, False)]
    front = tuple(FrontPoint(n, {"accuracy": 0.6875 - n / 10, "cost_usd": 0.00132 / (n + 1)},
                             {"model": m, "optimizer": o, "demos": d, "calibrate": c, "instruction": n}, f"{n:032x}")
                  for n, (m, o, d, c) in enumerate(params))
    study = StudyOutcome("banking_intent", "promptops/banking_intent/1", "sqlite:///optuna.db", "0" * 32,
                         {"accuracy": "maximize", "cost_usd": "minimize"}, (), front, front[0], None, 2, None, 0.0031, 736, 175.0)
    optimize_view.result(OptimizationResult(study, None, None))
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    assert not any("…" in line for line in lines), "\n".join(lines)
    table = "\n".join(lines)
    for value in ("$0.001320", "$0.000440", "random_search", "bootstrap", "uncalibrated", "0.6875", "local/smollm2-135m"):
        assert value in table, (value, table)
