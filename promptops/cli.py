"""The `promptops` command: click commands only. Each parses, calls the API, renders.

Nothing heavy is imported at module level, so `promptops --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import click


def _field_values(items: tuple[str, ...], option: str) -> dict[str, str]:
    """`FIELD=VALUE` options as a mapping; the value may itself contain '='."""
    from promptops.errors import PromptopsError

    values = {}
    for item in items:
        field, equals, value = item.partition("=")
        if not equals:
            raise PromptopsError(f"{option} {item!r} is not FIELD=VALUE")
        if field in values:  # the last would win silently
            raise PromptopsError(f"{option} {field!r} is given twice ({field}={values[field]!r}, {field}={value!r}): give it once")
        values[field] = value
    return values


@contextmanager
def _shown_if_unlogged(show: Callable[[Any], None]) -> Iterator[None]:
    """Work MLflow could not record is still shown (`show(result)`) before its one-line error: it was paid for."""
    from promptops.errors import UnloggedError

    try:
        yield
    except UnloggedError as exc:
        if exc.result is not None:
            show(exc.result)
        raise


@contextmanager
def _flags(**values: Any) -> Iterator[None]:
    """An error about a value given on the command line (`PromptopsError.value`) is led by its flag, `--model: unknown
    model 'gpt5': ...`, so it is not taken for the prompt file's."""
    from promptops.errors import PromptopsError

    given = {f"--{name.replace('_', '-')}": str(value) for name, value in values.items() if value is not None}
    try:
        yield
    except PromptopsError as exc:
        flag = next((flag for flag, value in given.items() if exc.value is not None and value == exc.value), None)
        if flag is not None:
            exc.placed(flag)
        raise


class _Group(click.Group):
    """Turns user mistakes into one line on stderr and a non-zero exit; bugs keep their traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from promptops._secrets import redact, scrub_log_records
        from promptops.models import BudgetExhausted
        from promptops.errors import PromptopsError, WriteRefusedError

        scrub_log_records()  # what MLflow, DSPy or LiteLLM log to this terminal keeps no secret either
        try:
            return super().invoke(ctx)
        except (PromptopsError, BudgetExhausted) as exc:
            click.echo(f"Error: {redact(str(exc))}", err=True)  # a message may quote what the user typed or a provider said
            ctx.exit(exc.exit_code)
        except OSError as exc:  # a read-only .git or project folder, a full disk: the file, not a traceback
            if exc.errno not in WriteRefusedError.REFUSALS or not exc.filename:
                raise
            click.echo(f"Error: {WriteRefusedError(exc.filename, exc)}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted: stopped before anything was logged.", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="promptops")
def main() -> None:
    """promptops: version, evaluate, optimize and promote prompts."""


@main.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
def init_command(directory: str) -> None:
    """Start a promptops project in DIRECTORY (default: here): an example prompt, its eval set, an experiment, git."""
    import shlex
    from pathlib import Path

    import promptops
    from promptops.scaffold import EXAMPLE_PROMPT as name

    root = promptops.init_project(directory)
    click.echo(f"Created a promptops project in {root}, committed to git:")
    click.echo(f"  prompts/{name}.yaml               an example classifier; its comments explain each key")
    click.echo(f"  experiments/data/{name}/          its eval set: real BANKING77 rows (CC-BY-4.0)")
    click.echo(f"  experiments/{name}.yaml           an example search for promptops optimize")
    click.echo("Next:")
    if Path(directory).resolve() != Path.cwd().resolve():
        click.echo(f"  cd {shlex.quote(directory)}")
    click.echo(f"  promptops eval {name} --limit 3      # 3 dev rows on the embedded model")
    click.echo(f"  promptops eval {name} --split test   # the whole test split")
    click.echo(f"  promptops optimize {name}            # the winner becomes the candidate version")
    click.echo("  promptops status")


@main.command("eval")
@click.argument("prompt")
@click.option("--data", type=click.Path(), help="Eval set: a folder with train/dev/test files or one file with a split column. Default: the prompt's eval.data.")
@click.option("--split", default="dev", show_default=True, type=click.Choice(["train", "dev", "test"]))
@click.option("--model", help="Model string overriding the prompt's, e.g. local/smollm2-135m, gguf:PATH, openai/gpt-4o-mini.")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N examples.")
@click.option("--threads", type=click.IntRange(min=1), help="Parallel requests (default: 1 for local models, which share one llama.cpp context; 8 for hosted).")
@click.option("--metric", help="Primary metric: accuracy, f1, schema_validity, similarity, module:function, or a judge file (judges/NAME.yaml). Default: the prompt's.")
@click.option("--no-cache", is_flag=True, help="Call the model even when DSPy's cache has the answer.")
@click.option("--no-track", is_flag=True, help="Do not log an MLflow run.")
@click.option("--rows", type=click.Choice(["all", "wrong", "held"]), is_flag=False, flag_value="all",
              help="Also list every row (input, expected, predicted, right or wrong, confidence); `--rows wrong` only the "
                   "wrong ones, `--rows held` those below min_confidence. With --json, as a `rows` list.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def eval_command(prompt: str, data: Optional[str], split: str, model: Optional[str], limit: Optional[int],
                 threads: Optional[int], metric: Optional[str], no_cache: bool, no_track: bool, rows: Optional[str],
                 as_json: bool) -> None:
    """Evaluate PROMPT (a name in prompts/, or the path of its file there) and log the run to MLflow."""
    import promptops
    from promptops.reports import tables

    def show(result: Any) -> None:
        if as_json:
            click.echo(json.dumps({**result.summary(), **({"rows": result.rows(rows)} if rows else {})}, default=str))
        else:
            tables.eval_result(result)
            if rows:
                tables.eval_rows(result, rows)

    with _shown_if_unlogged(show), tables.progress_bar("evaluating", enabled=not as_json) as on_progress, \
            _flags(model=model, metric=metric, data=data):
        result = promptops.evaluate(
            prompt, data=data, split=split, model=model, limit=limit, threads=threads,
            cache=not no_cache, metric=metric, track=not no_track, on_progress=on_progress,
        )
    show(result)


@main.command("prompts")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per prompt file.")
def prompts_command(as_json: bool) -> None:
    """List the prompts in prompts/. A file that cannot be read is listed with its error; then the exit code is 1."""
    import promptops
    from promptops.reports import tables

    listings = promptops.list_prompts()
    if as_json:
        click.echo(json.dumps([listing.summary() for listing in listings]))
    else:
        tables.prompt_list(listings)
    if any(listing.error for listing in listings):
        sys.exit(1)


@main.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per model.")
def models_command(as_json: bool) -> None:
    """List the embedded models and whether their weights are installed here."""
    import dataclasses

    import promptops
    from promptops.reports import tables

    listings = promptops.list_models()
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(listing) for listing in listings]))
    else:
        tables.local_models(listings)


@main.command("doctor")
@click.argument("models", nargs=-1)
@click.option("--timeout", "timeout_s", default=180.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds each model may take to load and answer.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per model.")
def doctor_command(models: tuple[str, ...], timeout_s: float, as_json: bool) -> None:
    """Check that each embedded model (or each of MODELS) loads and answers on this machine.

    Each runs one short constrained call in a child process, so a crash of llama.cpp is reported,
    not suffered. Exits 1 if an installed model fails, or if none is installed.
    """
    import promptops
    from promptops.reports import tables

    results = promptops.doctor(list(models) or None, timeout_s=timeout_s)
    if as_json:
        click.echo(json.dumps([result.summary() for result in results]))
    else:
        tables.doctor_report(results)
    if any(r.status == "failed" for r in results) or not any(r.ok for r in results):
        sys.exit(1)


@main.command("versions")
@click.argument("prompt")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, oldest version first.")
def versions_command(prompt: str, as_json: bool) -> None:
    """List the versions of PROMPT: every commit that changed its file, v1 the oldest."""
    import promptops
    from promptops.reports import tables

    history = promptops.versions(prompt)
    if as_json:
        click.echo(json.dumps(history.summary()))
    else:
        tables.version_table(history.name, list(history.versions), extra_columns=history.columns)


@main.command("show")
@click.argument("reference", metavar="PROMPT[@VERSION]")
def show_command(reference: str) -> None:
    """Print PROMPT's file as of VERSION: v3, a commit, tag or branch; without @, the working file.
    EXPERIMENT@trial:N prints the prompt trial N of the experiment's latest study compiled."""
    import promptops
    from promptops.reports import tables

    trial = promptops.parse_trial_reference(reference)
    if trial is not None:
        tables.prompt_source(f"{trial[0]} trial {trial[1]} (the experiment's latest study)", promptops.trial_prompt(*trial).to_yaml())
        return
    tables.prompt_file(promptops.show(reference))


@main.command("trials")
@click.argument("experiment")
@click.option("--study", type=click.IntRange(min=1), help="Study number K of promptops/EXPERIMENT/K (default: the latest).")
@click.option("--storage", help="The Optuna storage the study is in (default: sqlite:///optuna.db in the project).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def trials_command(experiment: str, study: Optional[int], storage: Optional[str], as_json: bool) -> None:
    """List every trial of EXPERIMENT's study: configuration, scores, dev rows, calls, cost, state, MLflow run.
    `promptops show EXPERIMENT@trial:N` prints a trial's prompt."""
    import promptops
    from promptops.reports import optimize_view

    listing = promptops.trials(experiment, study=study, storage=storage)
    if as_json:
        click.echo(json.dumps(listing.summary(), default=str))
    else:
        optimize_view.trial_table(listing)


@main.command("diff")
@click.argument("old", metavar="PROMPT@A")
@click.argument("new", metavar="PROMPT@B")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of changes.")
def diff_command(old: str, new: str, as_json: bool) -> None:
    """Show what changed from PROMPT@A to PROMPT@B, by section; PROMPT without @ is the working file."""
    import dataclasses

    import promptops
    from promptops.reports import tables

    found = promptops.diff(old, new)
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(change) for change in found.changes]))
    else:
        tables.prompt_diff(found.title, list(found.changes))


@main.command("optimize")
@click.argument("experiment")
@click.option("--n-trials", type=click.IntRange(min=1), help="Trials to complete (default: the experiment's budget.n_trials).")
@click.option("--storage", help="Optuna storage URL, e.g. postgresql://host/db. Default: sqlite:///optuna.db at the project root.")
@click.option("--resume", is_flag=True, help="Continue the experiment's latest study; finished trials are not redone.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes on this machine, this one included, on one study (use a PostgreSQL --storage).")
@click.option("--join", is_flag=True, help="Add this process as a worker to the experiment's running study in --storage (from any machine).")
@click.option("--no-write", is_flag=True, help="Report the winner without committing it as a new version.")
@click.option("--write-anyway", is_flag=True, help="Commit the winner even if it does not pass the gate on test (for exploration).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the live view and tables.")
def optimize_command(experiment: str, n_trials: Optional[int], storage: Optional[str], resume: bool, workers: int, join: bool,
                     no_write: bool, write_anyway: bool, as_json: bool) -> None:
    """Search the space of EXPERIMENT (a name in experiments/ or a YAML path); the winner becomes the candidate version."""
    import promptops
    from promptops.errors import PromptopsError
    from promptops.reports import optimize_view

    if no_write and write_anyway:
        raise PromptopsError("--no-write and --write-anyway contradict each other: --no-write commits nothing, --write-anyway"
                             " commits the winner even if it fails the gate; give one")
    try:
        with optimize_view.live_view(enabled=not as_json) as on_progress:
            result = promptops.optimize(experiment, n_trials=n_trials, storage=storage, resume=resume, join=join, workers=workers,
                                        write_winner=not no_write, write_anyway=write_anyway, on_progress=on_progress)
    except KeyboardInterrupt:
        click.echo(f"Interrupted: finished trials are kept; continue with: promptops optimize {experiment} --resume", err=True)
        sys.exit(130)
    if as_json:
        click.echo(json.dumps(optimize_view.as_json(result), default=str))
    else:
        optimize_view.result(result)


@main.command("promote")
@click.argument("prompt")
@click.option("--version", "version", help="Version to promote: vN, a commit or a channel. Default: the latest committed version.")
@click.option("--to", "channel", default="production", show_default=True, type=click.Choice(["production", "staging", "candidate"]))
@click.option("--data", type=click.Path(), help="Gate eval set (default: the prompt's eval.data).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "dev", "test"]))
@click.option("--limit", type=click.IntRange(min=1), help="Gate on the first N examples only.")
@click.option("--rule", type=click.Choice(["non_inferior", "not_worse", "superior"]), help="Gate rule (default: the prompt's eval.gate.rule, else non_inferior).")
@click.option("--tolerance", type=click.FloatRange(min=0, max=1), help="How much worse the candidate may be, in units of the primary metric (default: eval.gate.tolerance, else 0.02).")
@click.option("--max-cost", "max_cost_usd", type=click.FloatRange(min=0), help="Refuse when the candidate's eval costs more than this (USD).")
@click.option("--force", is_flag=True, help="Promote even if the gate fails (needs --reason).")
@click.option("--reason", help="Why; kept in the audit trail.")
def promote_command(prompt: str, version: Optional[str], channel: str, data: Optional[str], split: str, limit: Optional[int],
                    rule: Optional[str], tolerance: Optional[float], max_cost_usd: Optional[float], force: bool, reason: Optional[str]) -> None:
    """Promote a version of PROMPT to a channel through the eval gate, in git and the Prompt Registry."""
    import promptops
    from promptops.reports import tables

    with _flags(data=data):
        move = promptops.promote(prompt, version=version, channel=channel, data=data, split=split, limit=limit,
                                 rule=rule, tolerance=tolerance, max_cost_usd=max_cost_usd, force=force, reason=reason)
    tables.channel_move(move)


@main.command("rollback")
@click.argument("prompt")
@click.option("--channel", default="production", show_default=True, type=click.Choice(["production", "staging", "candidate"]))
@click.option("--to", "to", help="Version to go back to (default: the one the channel served before its last move).")
@click.option("--reason", help="Why; kept in the audit trail.")
def rollback_command(prompt: str, channel: str, to: Optional[str], reason: Optional[str]) -> None:
    """Move a channel of PROMPT back to its previous version (no gate), in git and the Prompt Registry."""
    import promptops
    from promptops.reports import tables

    tables.channel_move(promptops.rollback(prompt, channel=channel, to=to, reason=reason))


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object: the prompts and the problems.")
def status_command(as_json: bool) -> None:
    """Every prompt: its channel versions, whether the working file differs from production, its last full eval.

    Then every inconsistency seen (git and the registry disagree, an interrupted move, a conflict in a
    channels file, channels of a deleted prompt, an unreadable store), one line each; if there is one,
    or a prompt file cannot be read, the exit code is 1.
    """
    import promptops
    from promptops.reports import tables

    report = promptops.status()
    if as_json:
        click.echo(json.dumps(report.summary(), default=str))
    else:
        tables.status_table(report)
    if not report.ok:
        sys.exit(1)


@main.command("sync")
@click.argument("prompts", nargs=-1)
@click.option("--check", is_flag=True, help="Only report drift; exit 1 if there is any.")
def sync_command(prompts: tuple[str, ...], check: bool) -> None:
    """Make the Prompt Registry's aliases agree with the channels in git (git wins)."""
    import promptops
    from promptops.reports import tables

    drifts = promptops.sync(list(prompts) or None, repair=not check)
    tables.drifts(drifts)
    if check and drifts:
        sys.exit(1)


@main.command("run")
@click.argument("reference", metavar="PROMPT[@REF]")
@click.option("--input", "-i", "inputs", multiple=True, metavar="FIELD=VALUE", help="An input field; repeat for each.")
@click.option("--model", help="Model string overriding the prompt's.")
@click.option("--key", help="The user this request is for: their cost cap and rate limit apply (only a hash is traced).")
@click.option("--no-trace", is_flag=True, help="Do not write an MLflow trace.")
@click.option("--approve", "approve", type=click.Choice(["deny", "ask"]), default="deny", show_default=True,
              help="An agent's tools marked approval: required: deny them, or ask at the terminal (yes, no, or edit the arguments).")
@click.option("--json", "as_json", is_flag=True, help="Print the outputs as one JSON object.")
def run_command(reference: str, inputs: tuple[str, ...], model: Optional[str], key: Optional[str], no_trace: bool, approve: str,
                as_json: bool) -> None:
    """Run PROMPT@production (or @vN, @staging, ...) on the given inputs, within its guardrails, and print its outputs.

    An answer less sure than the prompt's guardrails.output.min_confidence is printed as held for
    review (with --json, under "_needs_review") and the exit code is 3. For an agent, each tool
    call (and each approval asked for) is printed on stderr (with --json, under "_tool_calls").
    """
    import promptops
    from promptops.program import ask_in_terminal
    from promptops.reports import tables

    with _flags(model=model):
        result = promptops.run(reference, _field_values(inputs, "--input"), model=model, key=key, trace=not no_trace,
                               approve=ask_in_terminal if approve == "ask" else None,
                               on_tool_calls=None if as_json else tables.tool_calls)
    if as_json:
        click.echo(json.dumps(result.summary(), ensure_ascii=False))
    else:
        tables.run_result(result)
    if result.review:
        sys.exit(3)


@main.command("traces")
@click.argument("prompt")
@click.option("--failed", is_flag=True, help="Only refused or failed requests.")
@click.option("--needs-review", is_flag=True, help="Only answers held for review (guardrails.output.min_confidence).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, newest first.")
def traces_command(prompt: str, failed: bool, needs_review: bool, limit: int, as_json: bool) -> None:
    """List PROMPT's most recent traced requests: version, status, guardrail decisions, label confidence, cost, tokens, latency."""
    import dataclasses

    import promptops
    from promptops.reports import tables

    found = promptops.traces(prompt, failed=failed, needs_review=needs_review, limit=limit)
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(summary) for summary in found]))
    else:
        tables.trace_list(prompt, found, failed=failed, needs_review=needs_review)


@main.command("replay")
@click.argument("trace_id")
@click.option("--version", "version", help="Replay against this version instead (vN, a channel or a commit).")
@click.option("--model", help="Replay against this model instead.")
@click.option("--no-cache", is_flag=True, help="Ask the model again even if DSPy's cache holds the answer.")
@click.option("--live-tools", is_flag=True, help="An agent's tools run again (with the approvals the trace recorded) instead of returning the recorded results.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def replay_command(trace_id: str, version: Optional[str], model: Optional[str], no_cache: bool, live_tools: bool,
                   as_json: bool) -> None:
    """Re-run the request traced as TRACE_ID and show its outputs beside the original ones.

    An agent's tools are not run again: each step gets the result the trace recorded, so the replay
    has no side effects (unless --live-tools)."""
    import dataclasses

    import promptops
    from promptops.reports import tables

    with _flags(model=model):
        result = promptops.replay(trace_id, version=version, model=model, cache=not no_cache, live_tools=live_tools)
    if as_json:
        click.echo(json.dumps({**dataclasses.asdict(result), "same": result.same}, default=str, ensure_ascii=False))
    else:
        tables.replay_result(result)


@main.group("feedback")
def feedback_group() -> None:
    """Turn traced requests into eval rows: what the answer should have been."""


@feedback_group.command("add")
@click.argument("trace_id", required=False)
@click.option("--expected", "expected", multiple=True, metavar="FIELD=VALUE", help="The correct output; repeat per field.")
@click.option("--from-failed", "from_failed", metavar="PROMPT", help="Add every failing trace of PROMPT that has expected outputs recorded.")
@click.option("--split", default="dev", show_default=True, type=click.Choice(["train", "dev", "test"]), help="Which split gets the rows.")
def feedback_add_command(trace_id: Optional[str], expected: tuple[str, ...], from_failed: Optional[str], split: str) -> None:
    """Append TRACE_ID's inputs with the --expected outputs to its prompt's eval set, as one commit."""
    import promptops
    from promptops.errors import PromptopsError
    from promptops.reports import tables

    if (trace_id is None) == (from_failed is None):
        raise PromptopsError("give either a TRACE_ID or --from-failed PROMPT")
    if from_failed:
        if expected:
            raise PromptopsError("--expected goes with one TRACE_ID; --from-failed uses the outputs recorded on each trace")
        added = promptops.add_failed_feedback(from_failed, split=split)
    else:
        added = promptops.add_feedback(trace_id, _field_values(expected, "--expected"), split=split)
    tables.feedback_added(added)
    if from_failed and not added.rows and added.skipped:
        sys.exit(1)


@main.group("judge")
def judge_group() -> None:
    """LLM judges: check one against rows a person labelled before gating on it."""


@judge_group.command("check")
@click.argument("judge")
@click.option("--data", required=True, type=click.Path(), help="JSONL rows: {\"inputs\": {...}, \"answer\": {...}, \"reference\": {...}, \"label\": \"pass\"} (reference optional).")
@click.option("--limit", type=click.IntRange(min=1), help="Check only the first N rows.")
@click.option("--no-cache", is_flag=True, help="Call the judge's model even when DSPy's cache has the answer.")
@click.option("--no-track", is_flag=True, help="Do not log an MLflow run.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def judge_check_command(judge: str, data: str, limit: Optional[int], no_cache: bool, no_track: bool, as_json: bool) -> None:
    """Score labelled rows with JUDGE (judges/NAME.yaml, a path, or a prompt whose metric is a judge) and report its
    agreement with the labels: accuracy, Cohen's kappa and a confusion table."""
    import promptops
    from promptops.reports import tables

    def show(result: Any) -> None:
        if as_json:
            click.echo(json.dumps(result.summary(), default=str))
        else:
            tables.judge_check(result)

    with _shown_if_unlogged(show), tables.progress_bar("judging", enabled=not as_json) as on_progress, _flags(data=data):
        result = promptops.check_judge(judge, data, limit=limit, cache=not no_cache, track=not no_track, on_progress=on_progress)
    show(result)


@main.command("check")
@click.option("--base", help="Compare with where HEAD left this ref (git diff REF...). Default: main, or origin/$GITHUB_BASE_REF in CI; on main itself, HEAD.")
@click.option("--report", "report_file", type=click.Path(dir_okay=False), help="Also write the markdown report to this file (for a pull-request comment).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "dev", "test"]), help="The gate split of each prompt's eval set.")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N examples of each eval set.")
@click.option("--rule", type=click.Choice(["non_inferior", "not_worse", "superior"]), help="Gate rule for every prompt (default: each prompt's eval.gate.rule, else non_inferior).")
@click.option("--tolerance", type=click.FloatRange(min=0, max=1), help="How much worse a prompt may be than production, in units of its primary metric (default: its eval.gate.tolerance, else 0.02).")
@click.option("--model", help="Model string overriding every prompt's, e.g. local/smollm2-135m in CI.")
@click.option("--no-track", is_flag=True, help="Do not log MLflow runs.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of markdown.")
def check_command(base: Optional[str], report_file: Optional[str], split: str, limit: Optional[int], rule: Optional[str],
                  tolerance: Optional[float], model: Optional[str], no_track: bool, as_json: bool) -> None:
    """Evaluate the prompts changed since BASE against production; exit 1 if one regressed or missed its threshold."""
    from pathlib import Path

    import promptops
    from promptops.artifact import atomic_write_text
    from promptops.reports import tables
    from promptops.reports.markdown import check_markdown

    with tables.progress_bar("checking", enabled=not as_json) as on_progress, _flags(model=model):
        report = promptops.check(base, split=split, limit=limit, rule=rule, tolerance=tolerance, model=model, track=not no_track,
                                 on_progress=on_progress)
    markdown = check_markdown(report)
    if report_file:
        atomic_write_text(Path(report_file), markdown)
    click.echo(json.dumps(report.summary(), default=str) if as_json else markdown, nl=as_json)
    if not report.passed:
        sys.exit(1)


@main.command("compare")
@click.argument("a", metavar="PROMPT@A")
@click.argument("b", metavar="PROMPT@B")
@click.option("--data", type=click.Path(), help="Eval set (default: B's eval.data).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "dev", "test"]))
@click.option("--limit", type=click.IntRange(min=1), help="Compare on the first N examples only.")
@click.option("--model", help="Model string overriding both prompts'.")
@click.option("--metric", help="Primary metric (default: B's).")
@click.option("--no-track", is_flag=True, help="Do not log an MLflow run.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of markdown.")
def compare_command(a: str, b: str, data: Optional[str], split: str, limit: Optional[int], model: Optional[str],
                    metric: Optional[str], no_track: bool, as_json: bool) -> None:
    """Compare PROMPT@A with PROMPT@B on the same examples: differences, confidence intervals, McNemar's test."""
    import promptops
    from promptops.reports import tables
    from promptops.reports.markdown import comparison_markdown

    def show(comparison: Any) -> None:
        click.echo(json.dumps(comparison.summary(), default=str) if as_json else comparison_markdown(comparison, heading="##"),
                   nl=as_json)

    with _shown_if_unlogged(show), tables.progress_bar("comparing", enabled=not as_json) as on_progress, \
            _flags(model=model, metric=metric, data=data):
        comparison = promptops.compare(a, b, data=data, split=split, limit=limit, model=model, metric=metric,
                                       track=not no_track, on_progress=on_progress)
    show(comparison)


@main.command("ab-report")
@click.argument("prompt")
@click.option("--since", help="Only requests from this date on (YYYY-MM-DD or an ISO date-time, UTC unless it says).")
@click.option("--reference", help="The arm the others are compared with (default: production, else the largest).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of markdown.")
def ab_report_command(prompt: str, since: Optional[str], reference: Optional[str], as_json: bool) -> None:
    """Per-arm outcomes of PROMPT's A/B split, from its traces and their feedback, with intervals and Fisher's test."""
    import promptops
    from promptops.reports.markdown import ab_markdown

    report = promptops.ab_report(prompt, since=since, reference=reference)
    click.echo(json.dumps(report.summary(), default=str) if as_json else ab_markdown(report), nl=as_json)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
