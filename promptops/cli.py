"""The `promptops` command: click commands only. Each parses, calls the API, renders.

Nothing heavy is imported at module level, so `promptops --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

import click


class _Group(click.Group):
    """Turns user mistakes into one line on stderr and a non-zero exit; bugs keep their traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from promptops.errors import PromptopsError

        try:
            return super().invoke(ctx)
        except PromptopsError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted: stopped before anything was logged.", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="promptops")
def main() -> None:
    """promptops: version, evaluate, optimize and promote prompts."""


@main.command("eval")
@click.argument("prompt")
@click.option("--data", type=click.Path(), help="Eval set: a folder with train/dev/test files or one file with a split column. Default: the prompt's eval.data.")
@click.option("--split", default="dev", show_default=True, type=click.Choice(["train", "dev", "test"]))
@click.option("--model", help="Model string overriding the prompt's, e.g. local/smollm2-135m, gguf:PATH, openai/gpt-4o-mini.")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N examples.")
@click.option("--threads", type=click.IntRange(min=1), help="Parallel requests (default: 1 for local models, which share one llama.cpp context; 8 for hosted).")
@click.option("--metric", help="Primary metric: accuracy, f1, schema_validity or module:function. Default: the prompt's.")
@click.option("--no-cache", is_flag=True, help="Call the model even when DSPy's cache has the answer.")
@click.option("--no-track", is_flag=True, help="Do not log an MLflow run.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def eval_command(prompt: str, data: Optional[str], split: str, model: Optional[str], limit: Optional[int],
                 threads: Optional[int], metric: Optional[str], no_cache: bool, no_track: bool, as_json: bool) -> None:
    """Evaluate PROMPT (a name in prompts/ or a YAML path) and log the run to MLflow."""
    import promptops
    from promptops import render

    with render.progress_bar("evaluating", enabled=not as_json) as on_progress:
        result = promptops.evaluate(
            prompt, data=data, split=split, model=model, limit=limit, threads=threads,
            cache=not no_cache, metric=metric, track=not no_track, on_progress=on_progress,
        )
    if as_json:
        click.echo(json.dumps(result.summary(), default=str))
    else:
        render.eval_result(result)


@main.command("prompts")
def prompts_command() -> None:
    """List the prompts in prompts/."""
    from promptops import render
    from promptops.artifact import find_project_root, load_prompt_file

    folder = find_project_root() / "prompts"
    render.prompt_list([load_prompt_file(path) for path in sorted(folder.glob("*.yaml"))])


@main.command("models")
def models_command() -> None:
    """List the embedded models and whether their weights are installed here."""
    from promptops import render

    render.local_models()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
