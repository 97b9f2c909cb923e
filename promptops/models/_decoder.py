"""Decoding one request on a loaded llama.cpp model, over llama-cpp-python's low-level calls.

Three ways to answer, one loop:
- **guided** (the default for a JSON schema): walk the plan of `promptops.models._plan`. Fixed
  text is appended in one batch without sampling; a `Choice` is picked over a token trie of its
  options, one forward pass per point where the options part, the rest of an option appended
  as it is; a `Free` value is sampled under a grammar for that value alone and ends as soon as
  it is complete. The answer is the JSON text DSPy's adapter expects, and each choice comes with
  its probability among the options (its confidence).
- **grammar**: the whole answer sampled token by token under the schema's grammar, as before;
  kept for comparison (`params: {decoding: grammar}`).
- **guided-sampled**: guided, but each label sampled under its grammar instead of picked over the
  trie: the same text before the label, so it isolates what choosing by likelihood changes.
- **text**: no schema; sampled until an end-of-generation token or a stop string.

Every way shares the model's key-value cache: tokens already evaluated are kept up to the
first difference (llama-cpp-python's own prefix reuse), and after a switch of prompt the
state of the previous prompt is kept in a `LlamaRAMCache`, so prompts that interleave (an
optimizer's candidates, a service's prompts) each find their instructions and demos evaluated.
"""

from __future__ import annotations

import ctypes
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Optional, Sequence

import numpy as np

from promptops.models._plan import Choice, Free, Part, Switch, Text, value_grammar_text, value_parts

# Load a kept state only when it saves at least this many tokens over what the cache holds live.
LOAD_STATE_GAIN_TOKENS = 32
STATE_CACHE_BYTES = 512 << 20


@dataclass
class DecodeStats:
    """What one request cost the model."""

    prompt_tokens: int = 0
    prompt_tokens_reused: int = 0  # already in the key-value cache, or loaded from a kept state
    forward_passes: int = 0  # calls to llama_decode
    sampled_tokens: int = 0  # tokens chosen by sampling (not appended as fixed text or a forced remainder)
    state_loads: int = 0
    state_saves: int = 0


@dataclass
class Decoded:
    text: str
    output_tokens: int
    finish: str  # "stop" or "length"
    confidence: dict[str, float] = field(default_factory=dict)
    stats: DecodeStats = field(default_factory=DecodeStats)


@dataclass
class _KeptState:
    """A llama.cpp context state without llama-cpp-python's copy of the logits (LlamaState copies ~100 MB of them)."""

    input_ids: np.ndarray
    n_tokens: int
    data: bytes
    llama_state_size: int  # LlamaRAMCache sizes its entries by this


class _Trie:
    """The options of a choice as token sequences sharing their common prefixes."""

    __slots__ = ("children", "option")

    def __init__(self) -> None:
        self.children: dict[int, _Trie] = {}
        self.option: Optional[int] = None  # index of the option that ends here


class Decoder:
    """One request: the prompt's tokens and what is appended after them, kept in step with the model's cache."""

    def __init__(self, llama: Any, prompt_tokens: Sequence[int], *, temperature: float, seed: int, max_tokens: int,
                 top_p: Optional[float] = None, top_k: Optional[int] = None, states: Any = None,
                 shared_length: int = 0):
        self.llama = llama
        self.tokens: list[int] = list(prompt_tokens)
        self.prompt_length = len(self.tokens)
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.max_tokens = int(max_tokens)
        self.top_p = top_p
        self.top_k = top_k
        self.rng = np.random.default_rng(self.seed)
        self.states = states
        self.shared_length = shared_length  # tokens this prompt shares with any input's (instructions, demos)
        self.stats = DecodeStats(prompt_tokens=self.prompt_length)
        self._fresh = False  # the model's last logits belong to the last of self.tokens
        self._vocab = llama._model.vocab
        self._n_vocab = llama.n_vocab()
        self._start()

    # -- the cache ---------------------------------------------------------------------------
    def _start(self) -> None:
        """Evaluate the prompt, from a kept state when one shares more of it than the live cache does."""
        live = self._common_prefix(self.tokens)
        if self.states is not None and self.states.cache_state:
            best_key, best = None, 0
            for key in self.states.cache_state:
                shared = common_prefix_length(np.asarray(key, dtype=np.intc), self.tokens)
                if shared > best:
                    best_key, best = key, shared
            if best_key is not None and best >= live + LOAD_STATE_GAIN_TOKENS:
                self._load(self.states[best_key])
                live = best
        self.stats.prompt_tokens_reused = min(live, self.prompt_length - 1) if self.prompt_length else 0
        # Keep a state when this prompt's shared part was not in the cache: a new prompt, or a switch back.
        # Otherwise the prompt is evaluated later, in one batch with the answer's first fixed text.
        if self.states is not None and live < self.shared_length:
            self._sync()
            self.states[tuple(self.tokens)] = self._save()
            self.stats.state_saves += 1

    def _common_prefix(self, tokens: Sequence[int]) -> int:
        return common_prefix_length(self.llama.input_ids[: self.llama.n_tokens], tokens)

    def _sync(self) -> None:
        """Make the model's cache hold exactly self.tokens, with the logits of the last one."""
        llama = self.llama
        common = self._common_prefix(self.tokens)
        if common == len(self.tokens) == llama.n_tokens and self._fresh:
            return
        if common == len(self.tokens):
            common -= 1  # the logits of the last token are needed again: evaluate it once more
        llama.n_tokens = common
        pending = self.tokens[common:]
        llama.eval(pending)  # removes what the cache held after `common` first
        self.stats.forward_passes += -(-len(pending) // llama.n_batch)
        self._fresh = True

    def _save(self) -> _KeptState:
        import llama_cpp

        ctx = self.llama._ctx.ctx
        size = llama_cpp.llama_state_get_size(ctx)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_get_data(ctx, buffer, size)
        n_tokens = self.llama.n_tokens
        return _KeptState(self.llama.input_ids[:n_tokens].copy(), n_tokens, bytes(buffer)[:written], written)

    def _load(self, state: _KeptState) -> None:
        import llama_cpp

        buffer = (ctypes.c_uint8 * state.llama_state_size).from_buffer_copy(state.data)
        if llama_cpp.llama_state_set_data(self.llama._ctx.ctx, buffer, state.llama_state_size) != state.llama_state_size:
            raise RuntimeError("llama.cpp did not accept a kept state")
        self.llama.input_ids[: state.n_tokens] = state.input_ids
        self.llama.n_tokens = state.n_tokens
        self._fresh = False
        self.stats.state_loads += 1

    # -- primitives -----------------------------------------------------------------------------
    @property
    def output_tokens(self) -> int:
        return len(self.tokens) - self.prompt_length

    def _room(self) -> int:
        return self.max_tokens - self.output_tokens

    def append(self, tokens: Sequence[int]) -> bool:
        """Append without sampling; False (and only what fits) when max_tokens is reached."""
        room = self._room()
        self.tokens.extend(tokens[: max(room, 0)])
        return len(tokens) <= room

    def logits_of(self, candidates: Sequence[int]) -> np.ndarray:
        self._sync()
        row = np.ctypeslib.as_array(self.llama._ctx.get_logits_ith(-1), shape=(self._n_vocab,))
        return row[np.asarray(candidates, dtype=np.intc)].astype(np.float64)

    def tokenize(self, text: str) -> list[int]:
        return _tokenize(self.llama, text)

    def is_end(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def piece(self, token: int) -> bytes:
        return self.llama.detokenize([token], special=False)

    def text(self) -> str:
        return self.llama.detokenize(self.tokens[self.prompt_length:], special=False).decode("utf-8", errors="replace")

    # -- sampling under a grammar -------------------------------------------------------------
    def sample(self, grammar_text: Optional[str], done: Callable[[bytes, bool], bool],
               stop: Sequence[str] = (), reserve: int = 0, closable: bool = False) -> str:
        """Sample tokens (under the grammar, if any) until `done(text, ended)` or an end token; 'length' when cut.

        `reserve` tokens are left for the rest of the answer. A `closable` value (a JSON string) that
        reaches them is closed where it stands ("cut"), so the answer stays whole, valid JSON.
        """
        from llama_cpp import LlamaGrammar

        grammar = LlamaGrammar.from_string(grammar_text, verbose=False) if grammar_text else None
        options: dict[str, Any] = {"temp": self.temperature, "grammar": grammar}
        if self.top_p is not None:
            options["top_p"] = self.top_p
        if self.top_k is not None:
            options["top_k"] = self.top_k
        self.llama.set_seed(self.seed)
        sampler = self.llama._init_sampler(**options)
        written = b""
        start = len(self.tokens)
        while True:
            if closable and self._room() <= reserve + 1:
                return self._close_string(start)
            if self._room() <= 0:
                return "length"
            self._sync()
            token = sampler.sample(self.llama._ctx, -1)  # also accepts the token into the grammar
            self.stats.sampled_tokens += 1
            if self.is_end(token):
                done(written, True)
                return "stop"
            self.tokens.append(token)
            written += self.piece(token)
            if stop:
                decoded = written.decode("utf-8", errors="ignore")
                if any(marker in decoded for marker in stop):
                    return "stop"
            if done(written, False):
                return "stop"

    def _close_string(self, start: int) -> str:
        """End a string value cut short: drop a half-written escape, then append the closing quote."""
        begun = self.llama.detokenize(self.tokens[start:]).decode("utf-8", errors="ignore")
        if not begun.strip():  # not even the opening quote yet: an empty string
            self.tokens.extend(self.tokenize('""' if begun else ' ""'))
            return "cut"
        while len(self.tokens) > start:
            text = self.llama.detokenize(self.tokens[start:]).decode("utf-8", errors="ignore")
            try:
                json.loads(text + '"')
                break
            except ValueError:
                self.tokens.pop()
        self.tokens.extend(self.tokenize('"'))
        return "cut"

    # -- choosing among options ----------------------------------------------------------------
    def choose(self, options: Sequence[str], follow_text: str, baseline: Optional["Baseline"] = None,
               open_ended: tuple[int, ...] = ()) -> tuple[int, float, bool]:
        """Pick one option by likelihood; (its index, its probability among the options, fits in max_tokens).

        An option in `open_ended` is only the start of a value the caller goes on to sample: once
        chosen, nothing of it is appended (the sampler writes it, as the value's grammar allows).
        """
        trie = _trie(self.llama, tuple(options))
        if open_ended:
            return self._choose_open(options, open_ended, baseline)
        end_token = self._end_token(follow_text)
        node, probability, path = trie, 1.0, []
        while True:
            branches = list(node.children)
            if node.option is not None:
                if not branches:
                    return node.option, probability, True
                branches.append(end_token)  # this option may end here or another continue: ask the model which
            if len(branches) == 1:
                token = branches[0]
            else:
                scores = _log_softmax(self.logits_of(branches))
                if baseline is not None:
                    scores = _log_softmax(scores - baseline(self, tuple(path), branches))
                index = self._pick(scores)
                probability *= float(np.exp(scores[index]))
                token = branches[index]
            if node.option is not None and token == end_token:
                return node.option, probability, True
            if not self.append([token]):
                return -1, probability, False
            path.append(token)
            node = node.children[token]

    def _choose_open(self, options: Sequence[str], open_ended: tuple[int, ...],
                     baseline: Optional["Baseline"]) -> tuple[int, float, bool]:
        """Decide at the first token: each closed option by its first token, each open one likewise."""
        first = {index: self.tokenize(option)[0] for index, option in enumerate(options)}
        candidates = list(dict.fromkeys(first.values()))
        if len(candidates) == 1:
            return open_ended[0], 1.0, True
        scores = _log_softmax(self.logits_of(candidates))
        if baseline is not None:
            scores = _log_softmax(scores - baseline(self, (), candidates))
        pick = self._pick(scores)
        chosen = next(index for index, token in first.items() if token == candidates[pick])
        if chosen in open_ended:
            return chosen, float(np.exp(scores[pick])), True
        return chosen, float(np.exp(scores[pick])), self.append(self.tokenize(options[chosen]))

    def _pick(self, scores: np.ndarray) -> int:
        if self.temperature <= 0:
            return int(np.argmax(scores))
        weights = np.exp(_log_softmax(scores / self.temperature))
        return int(self.rng.choice(len(weights), p=weights))

    def _end_token(self, follow_text: str) -> int:
        following = self.tokenize(follow_text) if follow_text else []
        return following[0] if following else self.llama.token_eos()


Baseline = Callable[[Decoder, tuple[int, ...], list[int]], np.ndarray]


class Calibration:
    """Contextual calibration (Zhao et al. 2021): what the prompt makes the model say whatever the input.

    At each decision (an enum's label, null or a value) the model's log-probabilities for the real
    input are offset by those it gives the same prompt with every input field replaced by "N/A",
    so an option the prompt favours regardless of the input (the first label of a list, a demo's
    name copied into every answer) loses that advantage. The content-free answer before a decision
    is fixed, not the real one (fixed text, null for nullable values, the first option of earlier
    choices), so each decision's baseline is computed once per prompt and kept by the engine.
    """

    def __init__(self, content_free_tokens: Sequence[int], store: dict[Any, np.ndarray], *, labels_only: bool = False):
        self.content_free_tokens = list(content_free_tokens)
        self.key = hash(tuple(self.content_free_tokens))
        self.store = store
        self.labels_only = labels_only  # calibrate the choice among labels, not null-or-a-value (where it drops real values)

    def at(self, plan: Sequence[Part], index: int) -> Baseline:
        """The baseline for the decision of plan part `index`."""

        def baseline(decoder: Decoder, path: tuple[int, ...], branches: list[int]) -> np.ndarray:
            key = (self.key, tuple(plan), index, path, tuple(branches))
            if key not in self.store:
                real = decoder.tokens
                prefix = decoder.tokenize(content_free_answer(plan, index)) if index else []
                decoder.tokens = self.content_free_tokens + prefix + list(path)
                try:
                    self.store[key] = _log_softmax(decoder.logits_of(branches))
                finally:
                    decoder.tokens = real
            return self.store[key]

        return baseline


def content_free_answer(plan: Sequence[Part], index: int) -> str:
    """The answer text before part `index` with a neutral value for every earlier decision."""
    text = []
    for part in plan[:index]:
        if isinstance(part, Text):
            text.append(part.text)
        elif isinstance(part, Choice):
            text.append(" null" if " null" in part.options else part.options[0])
        elif isinstance(part, Switch):
            text.append(" {}")
        else:
            text.append(" null" if part.nullable else (' ""' if part.opening else " 0"))
    return "".join(text)


def decode_plan(decoder: Decoder, plan: Sequence[Part], calibration: Optional[Calibration] = None, *,
                sample_choices: bool = False) -> Decoded:
    """Write the JSON answer the plan lays out; `sample_choices` samples labels under their grammar instead (for comparison).

    A string that would leave too few tokens for the rest of the answer is cut there and closed:
    the answer is whole JSON and its finish is "length", so it is still counted as truncated.
    """
    confidence: dict[str, float] = {}
    cut: list[str] = []
    finish = _decode_parts(decoder, plan, calibration, sample_choices, confidence, {}, cut)
    if finish == "stop" and cut:
        finish = "length"
    return Decoded(decoder.text(), decoder.output_tokens, finish, confidence, decoder.stats)


def _reserve(decoder: Decoder, rest: Sequence[Part]) -> int:
    """Tokens the rest of the answer needs at the least: its fixed text, its longest options, a short value each."""
    needed = 0
    for part in rest:
        if isinstance(part, Text):
            needed += len(decoder.tokenize(part.text))
        elif isinstance(part, Choice):
            needed += max(len(decoder.tokenize(option)) for option in part.options)
        elif isinstance(part, Switch):
            needed += 8 + max(len(case) for _, case in part.cases) // 8
        else:
            needed += 2
    return needed


def _decode_parts(decoder: Decoder, plan: Sequence[Part], calibration: Optional[Calibration], sample_choices: bool,
                  confidence: dict[str, float], chosen: dict[str, str], cut: list[str], reserve: int = 0) -> str:
    for index, part in enumerate(plan):
        calibrated = calibration is not None and not isinstance(part, Text) and not (calibration.labels_only and isinstance(part, Free))
        baseline = calibration.at(plan, index) if calibrated else None
        follow = plan[index + 1].text if index + 1 < len(plan) and isinstance(plan[index + 1], Text) else ""
        if isinstance(part, Text):
            if not decoder.append(decoder.tokenize(part.text)):
                return "length"
        elif isinstance(part, Choice) and sample_choices:
            schema = json.dumps({"enum": [json.loads(option) for option in part.options]})
            start = len(decoder.tokens)
            if decoder.sample(value_grammar_text(schema), _complete_value(False)) == "length":
                return "length"
            chosen[part.path] = decoder.llama.detokenize(decoder.tokens[start:]).decode("utf-8", errors="replace").strip()
        elif isinstance(part, Choice):
            index_chosen, probability, fits = decoder.choose(part.options, follow, baseline)
            if not fits:
                return "length"
            confidence[part.path] = round(probability, 6)
            chosen[part.path] = part.options[index_chosen].strip()
        elif isinstance(part, Switch):
            cases = dict(part.cases)
            case = cases.get(chosen.get(part.on, ""))
            if case is None:
                raise ValueError(f"{part.path} depends on {part.on}, which has no case for {chosen.get(part.on)!r}")
            # The case's value, laid out like any other; its own choices are not calibrated (no fixed baseline).
            finish = _decode_parts(decoder, value_parts(json.loads(case), part.path, part.level), None, sample_choices,
                                   confidence, chosen, cut, reserve + _reserve(decoder, plan[index + 1:]))
            if finish == "length":
                return "length"
        else:
            assert isinstance(part, Free)
            if part.nullable:
                index_chosen, _, fits = decoder.choose((" null", part.opening), follow, baseline, open_ended=(1,))
                if not fits:
                    return "length"
                if index_chosen == 0:
                    continue
            finish = decoder.sample(value_grammar_text(part.schema_json), _complete_value(part.numeric),
                                    reserve=reserve + _reserve(decoder, plan[index + 1:]), closable=bool(part.opening))
            if finish == "length":
                return "length"
            if finish == "cut":
                cut.append(part.path)
    return "stop"


def decode_grammar(decoder: Decoder, grammar_text: str) -> Decoded:
    """The whole answer sampled under the schema's grammar, ending with the model's end token."""
    finish = decoder.sample(grammar_text, lambda written, ended: ended)
    return Decoded(decoder.text(), decoder.output_tokens, finish, {}, decoder.stats)


def decode_text(decoder: Decoder, stop: Sequence[str]) -> Decoded:
    finish = decoder.sample(None, lambda written, ended: ended, stop=stop)
    text = decoder.text()
    for marker in stop:
        if marker in text:
            text = text[: text.index(marker)]
    return Decoded(text, decoder.output_tokens, finish, {}, decoder.stats)


def _complete_value(numeric: bool) -> Callable[[bytes, bool], bool]:
    """Whether the value written so far is whole: parses as JSON, and a number only once something ends it."""

    def done(written: bytes, ended: bool) -> bool:
        if ended:
            return True
        text = written.decode("utf-8", errors="ignore")
        try:
            value = json.loads(text)
        except ValueError:
            return False
        if isinstance(value, (int, float)) and not isinstance(value, bool) and numeric:
            return text != text.rstrip()  # "4" may become "42"; the grammar's trailing space ends it
        return True

    return done


def _log_softmax(values: np.ndarray) -> np.ndarray:
    shifted = values - np.max(values)
    return shifted - np.log(np.sum(np.exp(shifted)))


def common_prefix_length(a: Any, b: Sequence[int]) -> int:
    length = min(len(a), len(b))
    if length == 0:
        return 0
    left = np.asarray(a[:length], dtype=np.int64)
    right = np.asarray(b[:length], dtype=np.int64)
    differ = np.flatnonzero(left != right)
    return int(differ[0]) if differ.size else length


@lru_cache(maxsize=4096)
def _tokenize(llama: Any, text: str) -> list[int]:
    """Fixed texts and options recur in every answer of a prompt: tokenized once each."""
    return llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)


@lru_cache(maxsize=256)
def _trie(llama: Any, options: tuple[str, ...]) -> _Trie:
    root = _Trie()
    for index, option in enumerate(options):
        node = root
        for token in _tokenize(llama, option):
            node = node.children.setdefault(token, _Trie())
        node.option = index
    return root
