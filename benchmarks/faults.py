"""Guardrails under faults: 200 requests through `promptops.load()` against a fault-injecting
OpenAI-compatible server on 127.0.0.1, with 30% of calls faulty and one outage.

Faults per call (seeded): 5% slow, 5% hung (cut by the 1 s timeout), 10% HTTP 500, 5% bodies that
are not JSON, 5% answers outside the schema. From request 100, the server fails 12 calls in a
row (an outage), which must trip the circuit breaker (5 failures) of both models. One client
sends the requests one after another, waiting 50 ms between them.

Prints, and writes with --out:
- unhandled exceptions (anything but a typed `GuardrailError`): must be 0;
- spend against the session cap: must stay within the cap plus one call's cost, counted by
  promptops and, independently, from the usage the server reported for the answers it sent;
- breaker trips, against the outage's expected minimum;
- outcomes per kind, and request latency p50/p95 (tracing to a sqlite MLflow store included).

    python benchmarks/faults.py [--requests 200] [--out FILE]
    python benchmarks/faults.py --smoke [--out FILE]  # seconds, not figures: 40 requests, the outage from the 15th
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRICE_IN, PRICE_OUT = 10.0, 40.0  # USD per million tokens, set on the served model
SESSION_CAP_USD = 0.45
OUTAGE_AT, OUTAGE_CALLS, BREAKER_FAILURES = 100, 12, 5
THINK_TIME_S = 0.05

GUARDRAILS = f"""guardrails:
  timeout_s: 1.0
  output: {{retries: 1}}
  max_calls_per_request: 4
  cost_cap: {{session_usd: {SESSION_CAP_USD}}}
  circuit_breaker: {{failures: {BREAKER_FAILURES}, cooldown_s: 0.5}}
  fallback:
    - model: openai/backup-model
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true", help="40 requests, the outage at 15: checks the script runs, in seconds")
    args = parser.parse_args()
    outage_at = OUTAGE_AT
    if args.smoke:
        args.requests, outage_at = 40, 15
        args.out = (args.out or Path(tempfile.mkdtemp(prefix="promptops-smoke-")) / "faults.json").resolve()
        if args.out.parent == ROOT / "benchmarks":
            parser.error("--smoke writes no results: give --out a path outside benchmarks/")

    scratch = Path(tempfile.mkdtemp(prefix="promptops-bench-faults-"))
    os.environ.update({"MLFLOW_TRACKING_URI": f"sqlite:///{scratch / 'mlflow.db'}", "PROMPTOPS_PROJECT": str(scratch),
                       "DSPY_CACHEDIR": str(scratch / "cache"), "OPENAI_API_KEY": "sk-benchmark-not-a-real-key",
                       "MLFLOW_DISABLE_TELEMETRY": "true", "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    sys.path.insert(0, str(ROOT))
    import promptops
    from promptops.errors import GuardrailError
    from promptops.runtime import flush_traces, search_traces
    from promptops.runtime import _limits as limits
    from promptops.testing import FaultRates, FaultServer
    from promptops.testing.fault_server import last_user_message

    shutil.copytree(ROOT / "prompts", scratch / "prompts", ignore=shutil.ignore_patterns("channels"))
    shutil.copytree(ROOT / "experiments" / "data", scratch / "experiments" / "data")
    texts = [json.loads(line)["text"] for line in (scratch / "experiments/data/banking_intent/dev.jsonl").read_text().splitlines()]

    def answer(body: dict) -> dict:
        return {"intent": "card_arrival" if "card" in last_user_message(body, "text").lower() else "exchange_rate"}

    rates = FaultRates(delay=0.05, timeout=0.05, server_error=0.10, malformed=0.05, off_schema=0.05)
    outcomes: collections.Counter[str] = collections.Counter()
    unhandled: list[str] = []
    latencies: list[float] = []
    served_before_outage: list = []
    with FaultServer(rates, seed=11, answer=answer, delay_s=0.3, hang_s=5.0) as server:
        prompt_file = scratch / "prompts" / "banking_intent.yaml"
        prompt_file.write_text(prompt_file.read_text().replace(
            "  id: local/smollm2-135m\n",
            f"  id: openai/fault-model\n  api_base: {server.base_url}\n"
            f"  price: {{input_per_million_usd: {PRICE_IN}, output_per_million_usd: {PRICE_OUT}}}\n") + GUARDRAILS)
        promptops.load("banking_intent", cache=False)(text="warm-up: open the trace store")  # another session, not counted
        program = promptops.load("banking_intent", cache=False)
        server.reset()
        started_all = time.perf_counter()
        for index in range(args.requests):
            if index == outage_at:
                served_before_outage = server.log
                server.reset(script=["server_error"] * OUTAGE_CALLS, rates=rates)
            time.sleep(THINK_TIME_S)  # a client that waits between requests, so a cool-down can pass
            started = time.perf_counter()
            try:
                program(text=texts[index % len(texts)])
                outcomes["answered (fallback)" if program.last_record.answer.fallback else "answered"] += 1
            except GuardrailError as exc:
                outcomes[type(exc).__name__] += 1
            except Exception as exc:  # what the guardrails must never let through
                unhandled.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            latencies.append(time.perf_counter() - started)
        wall_s = time.perf_counter() - started_all
        flush_traces()
        served_log = served_before_outage + server.log
        billed = sum(entry.prompt_tokens * PRICE_IN + entry.completion_tokens * PRICE_OUT for entry in served_log) / 1e6
        server_faults = dict(collections.Counter(entry.fault for entry in served_log))
        dearest_call = max((entry.prompt_tokens * PRICE_IN + entry.completion_tokens * PRICE_OUT) / 1e6 for entry in served_log)

    latencies.sort()
    figures = {
        "requests": args.requests,
        "outage_at": outage_at,
        "smoke": args.smoke,
        "unhandled_exceptions": len(unhandled),
        "unhandled_examples": unhandled[:5],
        "outcomes": dict(outcomes),
        "server_calls": len(served_log),
        "server_faults": server_faults,
        "session_cap_usd": SESSION_CAP_USD,
        "spent_usd_promptops": round(program.spent_usd, 8),
        "billed_usd_by_server": round(billed, 8),
        "dearest_call_usd": round(dearest_call, 8),
        "within_cap_plus_one_call": billed <= SESSION_CAP_USD + dearest_call,
        "breaker_trips": limits.breaker_trips(),
        "breaker_trips_expected_at_least": 2,  # the outage opens the breaker of each of the two models
        "latency_p50_s": round(latencies[len(latencies) // 2], 4),
        "latency_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 4),
        "wall_time_s": round(wall_s, 2),
        "think_time_s": THINK_TIME_S,
        "traces": len(search_traces("banking_intent", limit=1000)),
    }
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    if args.smoke:
        print(f"smoke figures: {args.out}")
    shutil.rmtree(scratch, ignore_errors=True)
    if unhandled or not figures["within_cap_plus_one_call"] or figures["breaker_trips"] < 2:
        sys.exit(1)


if __name__ == "__main__":
    main()
