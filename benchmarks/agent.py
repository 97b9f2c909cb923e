"""banking_agent on the embedded model: what a task costs in time, model calls and tokens, and where the time goes.

    .venv/bin/python benchmarks/agent.py --limit 20 --out benchmarks/agent-results.json

Runs `promptops.evaluate("banking_agent", split="dev", limit=N)` with an empty DSPy cache and no
MLflow run, and reads the engine's own tallies around it: prompt tokens evaluated and reused from
a kept prefix, tokens sampled, forward passes. Then times llama.cpp alone on this machine (a
prompt of 400 tokens in one batch, and 20 single-token steps at 1,500 tokens of context), which
bounds what a task can cost: a step's new prompt tokens at the batch rate plus its sampled tokens
at the step rate. Run it alone: a second model process on 2 cores slows both many times.

`--smoke` runs 1 task and times llama.cpp on 64 prompt tokens and 4 steps at 128 tokens of context, in seconds
(not figures), and writes its JSON to a temporary file unless --out is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true", help="1 task and a short llama.cpp timing: checks the script runs, in seconds")
    options = parser.parse_args()
    if options.smoke:
        options.limit = 1
        options.out = (options.out or Path(tempfile.mkdtemp(prefix="promptops-smoke-")) / "agent.json").resolve()
        if options.out.parent == ROOT / "benchmarks":
            parser.error("--smoke writes no results: give --out a path outside benchmarks/")
    os.chdir(ROOT)
    os.environ["DSPY_CACHEDIR"] = tempfile.mkdtemp(prefix="promptops-bench-agent-")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.path.insert(0, str(ROOT))

    import promptops
    from promptops.models._llama_engine import engine_totals

    before = engine_totals()
    started = time.perf_counter()
    result = promptops.evaluate("banking_agent", split="dev", limit=options.limit, track=False)
    wall_s = time.perf_counter() - started
    after = engine_totals()
    engine = {key: round(after[key] - before.get(key, 0), 3) for key in after}
    n = result.n
    figures = {
        "date": date.today().isoformat(), "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "model": result.model, "tasks": n, "wall_s": round(wall_s, 1), "seconds_per_task": round(wall_s / n, 2),
        "metrics": result.metrics, "model_calls": result.model_calls, "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens, "engine": engine,
        "new_prompt_tokens_per_task": round((engine.get("prompt_tokens", 0) - engine.get("prompt_tokens_reused", 0)) / n, 1),
        "sampled_tokens_per_task": round(engine.get("sampled_tokens", 0) / n, 1),
        "llama_cpp": _llama_rates(batch=64, context=128, steps=4) if options.smoke else _llama_rates(),
        "smoke": options.smoke,
    }
    print(json.dumps(figures, indent=2))
    if options.out:
        options.out.write_text(json.dumps(figures, indent=2) + "\n")
    if options.smoke:
        print(f"smoke figures: {options.out}")
    return 0


def _llama_rates(batch: int = 400, context: int = 1500, steps: int = 20) -> dict[str, float]:
    """Prompt tokens per second in one batch, and milliseconds per single-token step at `context` tokens of context.

    Threads: PROMPTOPS_LLAMA_THREADS if set, as the engine's, else every core."""
    from llama_cpp import Llama

    from promptops.models._catalog import local_model

    threads = int(os.environ.get("PROMPTOPS_LLAMA_THREADS", 0)) or os.cpu_count() or 1
    llama = Llama(model_path=str(local_model("local/smollm2-135m").locate()), n_ctx=4096, n_threads=threads,
                  n_batch=512, seed=0, verbose=False)
    tokens = llama.tokenize(b"The customer writes about a card, a top-up and a fee. " * 200)[:1600]
    llama.reset()
    started = time.perf_counter()
    llama.eval(tokens[:batch])
    batch_s = time.perf_counter() - started
    llama.reset()
    llama.eval(tokens[:context])
    started = time.perf_counter()
    for token in tokens[context:context + steps]:
        llama.eval([token])
    step_s = (time.perf_counter() - started) / steps
    return {"prompt_tokens_per_s": round(batch / batch_s, 1), f"ms_per_step_at_{context}": round(step_s * 1000, 1)}


if __name__ == "__main__":
    sys.exit(main())
