"""What a loaded program costs per request on top of a bare DSPy call, on the embedded model.

A service loads `NAME@production` once per process and passes the user key per call. This
times N requests three ways, on the same in-process SmolLM2 with DSPy's cache off (every request
reaches the model), rounds interleaved so the host's drift hits each alike:

- bare: the prompt's plain DSPy program (`build_program`), as a user without promptops would call it;
- guarded: `promptops.load(ref, cache=False, trace=False)(text=..., key=user)`: input checks, the
  rate limit, the loop guard and caps, the circuit breaker, metering;
- guarded + traced: the same with one MLflow trace per request (sqlite store).

The figure is the time each request spends outside the model call (wall time minus the
engine's own timing of the llama.cpp call), as a median, and its difference from bare: that is
what promptops adds, robust to the host's drift. No git process runs per request: the ref is
resolved once, at load (counted).

    python benchmarks/serving.py [--n 30] [--rounds 3] [--out FILE]
    python benchmarks/serving.py --smoke [--out FILE]  # seconds, not figures: 2 requests, 1 round
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", default="banking_intent")
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true", help="2 requests, 1 round: checks the script runs, in seconds")
    args = parser.parse_args()
    if args.smoke:
        args.n, args.rounds = 2, 1
        args.out = (args.out or Path(tempfile.mkdtemp(prefix="promptops-smoke-")) / "serving.json").resolve()
        if args.out.parent == ROOT / "benchmarks":
            parser.error("--smoke writes no results: give --out a path outside benchmarks/")

    scratch = Path(tempfile.mkdtemp(prefix="promptops-serving-"))
    os.environ["DSPY_CACHEDIR"] = str(scratch / "dspy-cache")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{scratch / 'mlflow.db'}"
    os.environ["PROMPTOPS_PROJECT"] = str(ROOT)
    sys.path.insert(0, str(ROOT))

    import subprocess

    import promptops
    from promptops.evaluation import load_dataset
    from promptops.program import build_program

    ref = f"{args.prompt}@HEAD"  # a committed version, resolved through the same path as a channel
    prompt = promptops.load_prompt(args.prompt)
    texts = [example.inputs["text"] for example in load_dataset(prompt, split="dev").head(args.n).examples]
    guarded = promptops.load(ref, cache=False, trace=False)
    bare = build_program(guarded.prompt, cache=False)  # the same version, without promptops around it
    traced = promptops.load(ref, cache=False, trace=True)
    bare(text=texts[0]), guarded(text=texts[0], key="warm-up"), traced(text=texts[0], key="warm-up")  # load model, store

    git_calls = []
    real_popen = subprocess.Popen.__init__

    def counting(self, command, *rest, **options):
        if command and "git" in str(command[0] if isinstance(command, (list, tuple)) else command):
            git_calls.append(command)
        return real_popen(self, command, *rest, **options)

    subprocess.Popen.__init__ = counting

    lms = {"bare": bare.lm, "guarded": guarded.program.lm, "traced": traced.program.lm}

    def run(kind: str) -> list[tuple[float, float]]:
        """(wall time, the model's own time) per request; the model's time is what llama.cpp took, timed by the engine."""
        times = []
        for index, text in enumerate(texts):
            started = time.perf_counter()
            if kind == "bare":
                bare(text=text)
            elif kind == "guarded":
                guarded(text=text, key=f"user-{index % 5}")
            else:
                traced(text=text, key=f"user-{index % 5}")
            times.append((time.perf_counter() - started, lms[kind].totals.calls[-1].latency_s))
        return times

    kinds = ["bare", "guarded", "traced"]
    samples: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
    for round_index in range(args.rounds):
        for kind in (kinds if round_index % 2 == 0 else list(reversed(kinds))):
            samples[kind].extend(run(kind))
            last = samples[kind][-len(texts):]
            print(f"round {round_index + 1} {kind}: median {statistics.median(w for w, _ in last) * 1000:.1f} ms, "
                  f"outside the model {statistics.median(w - m for w, m in last) * 1000:.2f} ms", flush=True)
    subprocess.Popen.__init__ = real_popen

    # The host's speed drifts by tens of percent between rounds, so whole-request times compare
    # poorly across kinds; the time each request spent outside the model call does not drift with it.
    bare_outside = statistics.median(w - m for w, m in samples["bare"])
    bare_median = statistics.median(w for w, _ in samples["bare"])
    figures = {"prompt": args.prompt, "n": len(texts), "rounds": args.rounds, "model": prompt.model.id,
               "git_processes_during_requests": len(git_calls), "smoke": args.smoke}
    for kind in kinds:
        outside = statistics.median(w - m for w, m in samples[kind])
        median = statistics.median(w for w, _ in samples[kind])
        figures[f"{kind}_request_median_ms"] = round(median * 1000, 2)
        figures[f"{kind}_model_median_ms"] = round(statistics.median(m for _, m in samples[kind]) * 1000, 2)
        figures[f"{kind}_outside_model_median_ms"] = round(outside * 1000, 3)
        figures[f"{kind}_overhead_vs_bare_ms"] = round((outside - bare_outside) * 1000, 3)
        figures[f"{kind}_overhead_vs_bare_share_of_request"] = round((outside - bare_outside) / bare_median, 4)
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    if args.smoke:
        print(f"smoke figures: {args.out}")


if __name__ == "__main__":
    main()
