"""The embedded engine's speed and quality, decoding mode by mode: `promptops eval` of the shipped prompts.

For each model and prompt, evaluates the dev split with an empty cache (every answer decoded):
- grammar: the whole answer sampled under the schema's grammar (the engine before labels by likelihood);
- guided-sampled (enum prompts): guided's text, but each label sampled under its grammar;
- guided: fixed text appended, labels picked by likelihood, free values sampled value by value;
- guided+calibrate: each decision (label, null or value) offset by what a content-free input gets.

Reports seconds per example, examples per second, accuracy and F1, how many prompt tokens were
new vs already in the key-value cache, sampled tokens and forward passes per example, and how
often guided and grammar decoding agree. Runs one model process; run nothing else meanwhile.

    python benchmarks/engine.py [--models local/smollm2-135m,local/gemma3-270m] [--out FILE] [--limit N]
    python benchmarks/engine.py --smoke [--out FILE]  # seconds, not figures: SmolLM2, banking_intent, 2 rows a mode;
                                                      # interleaved: 1 row of each prompt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ("banking_intent", "restaurant_booking")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="local/smollm2-135m,local/gemma3-270m")
    parser.add_argument("--prompts", default=",".join(PROMPTS))
    parser.add_argument("--limit", type=int, default=None, help="rows per split (all dev rows by default)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--skip-interleaved", action="store_true", help="skip the interleaved-prompts measurement")
    parser.add_argument("--smoke", action="store_true", help="SmolLM2 on banking_intent, 2 rows: checks the script runs, in seconds")
    args = parser.parse_args()
    if args.smoke:
        args.models, args.prompts, args.limit = "local/smollm2-135m", "banking_intent", 2
        args.out = (args.out or Path(tempfile.mkdtemp(prefix="promptops-smoke-")) / "engine.json").resolve()
        if args.out.parent == ROOT / "benchmarks":
            parser.error("--smoke writes no results: give --out a path outside benchmarks/")

    scratch = Path(tempfile.mkdtemp(prefix="promptops-engine-"))
    os.environ["DSPY_CACHEDIR"] = str(scratch / "dspy-cache")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{scratch / 'mlflow.db'}"
    os.environ["PROMPTOPS_PROJECT"] = str(ROOT)
    sys.path.insert(0, str(ROOT))

    import promptops
    from promptops.evaluation import evaluate
    from promptops.models import LOCAL_MODELS
    from promptops.errors import PromptopsError

    rows: list[dict[str, Any]] = []
    for model_id in args.models.split(","):
        try:
            LOCAL_MODELS[model_id].locate()
        except PromptopsError as exc:
            print(f"-- {model_id}: {exc}")
            continue
        for name in args.prompts.split(","):
            prompt = promptops.load_prompt(name)
            modes = [("grammar", {"decoding": "grammar"}), ("guided", {}), ("guided+calibrate", {"calibrate": True})]
            if any(field.type == "enum" for field in prompt.outputs):
                modes.insert(1, ("guided-sampled", {"decoding": "guided-sampled"}))
            predictions: dict[str, list[Any]] = {}
            for mode, params in modes:
                variant = prompt.model_copy(update={"model": prompt.model.model_copy(update={"id": model_id, "params": params})})
                started = time.perf_counter()
                result = evaluate(variant, split="dev", limit=args.limit, cache=False, threads=1)
                wall_s = time.perf_counter() - started
                engine = _engine_totals()
                predictions[mode] = [example.predicted for example in result.examples]
                row = {
                    "model": model_id,
                    "prompt": name,
                    "mode": mode,
                    "n": result.n,
                    "seconds_per_example": round(wall_s / result.n, 4),
                    "examples_per_second": round(result.n / wall_s, 2),
                    "accuracy": round(result.metrics["accuracy"], 4),
                    "f1": round(result.metrics["f1"], 4),
                    "parse_failures": result.parse_failures,
                    "prompt_tokens_per_example": round(engine["prompt_tokens"] / max(engine["requests"], 1), 1),
                    "new_prompt_tokens_per_example": round((engine["prompt_tokens"] - engine["prompt_tokens_reused"]) / max(engine["requests"], 1), 1),
                    "sampled_tokens_per_example": round(engine["sampled_tokens"] / max(engine["requests"], 1), 2),
                    "forward_passes_per_example": round(engine["forward_passes"] / max(engine["requests"], 1), 2),
                    "output_tokens_per_example": round(result.output_tokens / result.n, 1),
                }
                if mode != "grammar":
                    same = sum(a == b for a, b in zip(predictions["grammar"], predictions[mode]))
                    row["agrees_with_grammar"] = round(same / result.n, 4)
                rows.append(row)
                print(json.dumps(row), flush=True)

    interleaved = _interleaved(args.models.split(",")[0], 1 if args.smoke else args.limit or 24) if not args.skip_interleaved else []
    for row in interleaved:
        print(json.dumps(row), flush=True)

    figures = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {_cpu_name()}",
        "threads": os.environ.get("PROMPTOPS_LLAMA_THREADS") or os.cpu_count(),
        "rows": rows,
        "interleaved": interleaved,
        "smoke": args.smoke,
    }
    print()
    print(_markdown(rows))
    for row in interleaved:
        print(f"interleaved, kept states {'on' if row['kept_states'] else 'off'}: {row['seconds_per_example']:.3f} s/example, "
              f"{row['new_prompt_tokens_per_example']:.0f} new of {row['prompt_tokens_per_example']:.0f} prompt tokens, "
              f"{row['state_loads']} state loads")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    if args.smoke:
        print(f"smoke figures: {args.out}")


def _interleaved(model_id: str, per_prompt: int) -> list[dict[str, Any]]:
    """Both example prompts' dev rows, alternating one by one (as an optimizer's candidates or a service's
    prompts interleave), guided decoding, with llama-cpp-python's RAM cache of prompt states on and off."""
    import promptops
    from promptops.evaluation import load_dataset
    from promptops.models import _llama_engine
    from promptops.program import build_program

    prompts = [promptops.load_prompt(name) for name in PROMPTS]
    programs = [build_program(p.model_copy(update={"model": p.model.model_copy(update={"id": model_id})}), cache=False)
                for p in prompts]
    rows = [load_dataset(p, split="dev").head(per_prompt).examples for p in prompts]
    order = [(index, row) for pair in zip(*rows) for index, row in enumerate(pair)]
    results = []
    original = _llama_engine.LoadedModel.states
    for kept in (True, False):
        if not kept:
            _llama_engine.LoadedModel.states = property(lambda self: None)
        try:
            _engine_totals()
            started = time.perf_counter()
            for index, row in order:
                programs[index](**row.inputs)
            wall_s = time.perf_counter() - started
            engine = _engine_totals()
        finally:
            _llama_engine.LoadedModel.states = original
        requests = max(engine["requests"], 1)
        results.append({
            "model": model_id, "kept_states": kept, "n": len(order),
            "seconds_per_example": round(wall_s / len(order), 4),
            "prompt_tokens_per_example": round(engine["prompt_tokens"] / requests, 1),
            "new_prompt_tokens_per_example": round((engine["prompt_tokens"] - engine["prompt_tokens_reused"]) / requests, 1),
            "state_loads": int(engine["state_loads"]),
        })
    return results


_last_totals: dict[str, float] = {}


def _engine_totals() -> dict[str, float]:
    """What the engine decoded since the last call: the difference of the process-wide totals."""
    from promptops.models._llama_engine import engine_totals

    now = engine_totals()
    since = {key: now[key] - _last_totals.get(key, 0) for key in now}
    _last_totals.update(now)
    return since


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | prompt | decoding | s/example | examples/s | accuracy | F1 | new / all prompt tokens | sampled tokens | forward passes | agrees with grammar |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['prompt']} | {row['mode']} | {row['seconds_per_example']:.3f} | {row['examples_per_second']:.1f} "
            f"| {row['accuracy']:.3f} | {row['f1']:.3f} | {row['new_prompt_tokens_per_example']:.0f} / {row['prompt_tokens_per_example']:.0f} "
            f"| {row['sampled_tokens_per_example']:.1f} | {row['forward_passes_per_example']:.1f} | {row.get('agrees_with_grammar', '')} |"
        )
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
