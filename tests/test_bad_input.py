"""Bad input (issue 13): each mistake is refused in one sentence naming its file and line, field or row,
before any model call; truncated answers are counted, and traces and MLflow artifacts keep no secret
and no megabyte. The corpus at the end runs every one-line error through the CLI and checks that it
changed nothing: not the files, not git, not the Prompt Registry."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Callable, Iterator

import pytest
from click.testing import CliRunner
from conftest import git_commit

import promptops
from promptops.cli import main
from promptops.errors import DatasetError, InputRejected, PromptFileError, PromptopsError, UnknownPromptError
from promptops.testing import FaultServer

NAME = "banking_intent"
DEV = Path("experiments") / "data" / NAME / "dev.jsonl"
PROMPT = Path("prompts") / f"{NAME}.yaml"


def edit(root: Path, relative: str | Path, old: str, new: str) -> Path:
    path = root / relative
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def line_of(path: Path, words: str, nth: int = 1) -> int:
    """1-based line of the nth line containing `words`."""
    found = [number for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if words in text]
    return found[nth - 1]


# --- 1. data files that are not UTF-8 ---------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_data_file_with_a_byte_that_is_not_utf8_names_its_line_and_column(project: Path, suffix: str) -> None:
    from promptops.evaluation import load_dataset

    path = project / f"cafe{suffix}"
    lines = ['{"text": "card?", "intent": "card_arrival", "split": "dev"}'] * 2 if suffix == ".jsonl" else \
        ["text,intent,split", "card?,card_arrival,dev"]
    bad = b'{"text": "caf\xe9 card", "intent": "card_arrival", "split": "dev"}' if suffix == ".jsonl" else b"caf\xe9 card,card_arrival,dev"
    path.write_bytes("\n".join(lines).encode() + b"\n" + bad + b"\n")
    column = bad.index(b"\xe9") + 1
    with pytest.raises(DatasetError) as caught:
        load_dataset(promptops.load_prompt(NAME), path, "dev")
    assert str(caught.value) == f"cafe{suffix}:3: not UTF-8 text (byte 0xe9 at column {column}); save the file as UTF-8"


# --- 2. search spaces that would crash after model calls --------------------------------------

SPACE = "name: tiny\nprompt: banking_intent\nsearch:\n  models: [local/smollm2-135m]\n  optimizers: [labeled]\n"


@pytest.mark.parametrize(
    ("extra", "line", "message"),
    [
        ("  demos: [-4, 8]\n", 6, "search.demos[0]: -4 is negative"),
        ("  demos:\n    - 8\n    - -4\n", 8, "search.demos[1]: -4 is negative"),
        ("  demos: -4\n", 6, "search.demos: -4 is negative"),
        ("  demos: {low: -4, high: 8}\n", 6, "search.demos.low: Input should be greater than or equal to 0"),
        ("  demos: []\n", 6, "search.demos: the list is empty"),
        ("  demos: [4, 16]\n  train_limit: 12\n", 6, "search.demos: 16 demos is more than train_limit 12"),
        ("  demos: {low: 0, high: 80, step: 20}\n", 6, "search.demos: 80 demos is more than train_limit 64"),
        ("  train_limit: 0\n", 6, "search.train_limit: Input should be greater than or equal to 1"),
        ("  temperature: 3.5\n", 6, "search.temperature: 3.5 is outside 0 to 2"),
        ("  temperature: [0.0, -0.1]\n", 6, "search.temperature[1]: -0.1 is outside 0 to 2"),
        ("  temperature: []\n", 6, "search.temperature: the list is empty"),
        ("  temperature: {low: 0.0, high: 2.5}\n", 6, "search.temperature.high: Input should be less than or equal to 2"),
        ("seed: -1\n", 6, "seed: Input should be greater than or equal to 0"),
    ],
)
def test_a_search_space_that_would_crash_later_is_refused_at_load(
        project: Path, extra: str, line: int, message: str) -> None:
    from promptops.optimizer import load_experiment

    (project / "experiments" / "tiny.yaml").write_text(SPACE + extra)
    with pytest.raises(PromptopsError) as caught:
        load_experiment("tiny")
    assert str(caught.value).startswith(f"experiments/tiny.yaml:{line}: {message}"), str(caught.value)


def test_more_demos_than_train_examples_is_refused_before_the_study(project: Path) -> None:
    from promptops.optimizer import load_context

    rows = [{"text": f"card {i}", "intent": "card_arrival", "split": "train"} for i in range(3)]
    rows += [{"text": "rates?", "intent": "exchange_rate", "split": "dev"}]
    (project / "small.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (project / "experiments" / "tiny.yaml").write_text(SPACE.replace("search:", "data: small.jsonl\nsearch:") + "  demos: [2, 4]\n")
    with pytest.raises(PromptopsError, match=r"^experiments/tiny.yaml:7: search.demos: 4 demos is more than the 3 examples of small.jsonl"):
        load_context("tiny")


def test_a_reflection_model_no_backend_serves_is_refused_before_the_study(project: Path) -> None:
    from promptops.optimizer import load_context

    (project / "experiments" / "tiny.yaml").write_text(SPACE.replace("[labeled]", "[gepa]") + "  demos: 2\n  reflection_model: gpt5\n")
    with pytest.raises(PromptopsError, match="unknown model 'gpt5'"):
        load_context("tiny")


# --- 3. credentials in model params, and check ------------------------------------------------


@pytest.mark.parametrize(
    ("params", "place"),
    [
        ("extra_headers:\n      Authorization: Bearer abc123def456", "model.params.extra_headers.Authorization: looks like a secret"),
        ("extra_headers: {X-Api-Key: k}", "model.params.extra_headers.X-Api-Key: looks like a secret"),
        ("extra_headers: {Cookie: session=1}", "model.params.extra_headers.Cookie: looks like a secret"),
        ("extra_headers: {X-Trace: Bearer abc123def456}", "model.params.extra_headers.X-Trace: the value looks like a secret"),
        ("stop: [sk-abcdefghijklmnop]", "model.params.stop[0]: the value looks like a secret"),
    ],
)
def test_a_credential_in_model_params_is_refused_at_its_line(project: Path, params: str, place: str) -> None:
    path = edit(project, PROMPT, "  max_tokens: 32\n", f"  max_tokens: 32\n  params:\n    {params}\n")
    with pytest.raises(PromptFileError) as caught:
        promptops.load_prompt(NAME)
    key = place.split(": ")[0].rsplit(".", 1)[-1].split("[")[0]
    assert str(caught.value).startswith(f"prompts/{NAME}.yaml:{line_of(path, key)}: {place}"), str(caught.value)
    assert str(caught.value).endswith("set it in the environment, not in the prompt file")
    assert "abc123def456" not in str(caught.value)


def test_ordinary_params_and_headers_still_load(project: Path) -> None:
    edit(project, PROMPT, "  max_tokens: 32\n", "  max_tokens: 32\n  params: {top_p: 0.9, max_tokens_per_call: 5, extra_headers: {X-Request-Source: ci}}\n")
    assert promptops.load_prompt(NAME).model.params["extra_headers"] == {"X-Request-Source": "ci"}


def test_check_turns_a_prompts_error_into_its_row_and_checks_the_others(
        git_project, mlflow_store: str, literal_model) -> None:
    from promptops.versioning import check

    root = Path(git_project.working_tree_dir)
    edit(root, PROMPT, "  max_tokens: 32\n", "  max_tokens: 32\n  params:\n    extra_headers: {Authorization: Bearer abc123def456}\n")
    edit(root, Path("prompts") / "restaurant_booking.yaml", "Copy each value", "Copy every value")
    report = check(limit=4, track=False)
    rows = {row.prompt: row for row in report.checks}
    assert not rows[NAME].passed and "extra_headers.Authorization: looks like a secret" in rows[NAME].reasons[0]
    assert rows["restaurant_booking"].passed and rows["restaurant_booking"].score is not None
    result = CliRunner().invoke(main, ["check", "--limit", "4", "--no-track"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "looks like a secret" in result.stdout and "abc123def456" not in result.stdout


def test_a_store_failure_after_the_eval_is_that_prompts_row(git_project, literal_model, monkeypatch) -> None:
    from promptops import tracking
    from promptops import check
    from promptops.errors import TrackingError

    def unreachable(*args, **kwargs):
        raise TrackingError("cannot log the comparison to MLflow at sqlite:///nowhere: disk full")

    monkeypatch.setattr(tracking, "log_comparison", unreachable)
    root = Path(git_project.working_tree_dir)
    edit(root, PROMPT, "Read the customer's message", "Read the message")
    (report_row,) = check(limit=4).checks
    assert not report_row.passed and "disk full" in report_row.reasons[0]


# --- 4. a key written twice ------------------------------------------------------------------


def test_a_key_written_twice_names_both_lines(project: Path) -> None:
    path = edit(project, PROMPT, "eval:\n", "model:\n  id: openai/gpt-4o-mini\neval:\n")
    with pytest.raises(PromptFileError) as caught:
        promptops.load_prompt(NAME)
    first, second = line_of(path, "model:"), line_of(path, "model:", 2)
    assert str(caught.value) == f"prompts/{NAME}.yaml:{second}: key 'model' repeats the one on line {first}"

    path.write_text(path.read_text().replace("model:\n  id: openai/gpt-4o-mini\n", "").replace("  max_tokens: 32\n", "  max_tokens: 32\n  max_tokens: 64\n"))
    with pytest.raises(PromptFileError, match=r"banking_intent.yaml:\d+: key 'max_tokens' repeats the one on line \d+"):
        promptops.load_prompt(NAME)


def test_an_experiment_key_written_twice_is_refused(project: Path) -> None:
    from promptops.optimizer import load_experiment

    (project / "experiments" / "tiny.yaml").write_text(SPACE + "  demos: [2]\nsearch:\n  models: [local/gemma3-270m]\n")
    with pytest.raises(PromptopsError, match=r"^experiments/tiny.yaml:7: key 'search' repeats the one on line 3$"):
        load_experiment("tiny")


def test_yaml_merge_keys_may_still_be_overridden() -> None:
    from promptops.artifact import safe_load

    assert safe_load("base: &base {a: 1, b: 2}\nother:\n  <<: *base\n  b: 3\n")["other"] == {"a": 1, "b": 3}


# --- 5. credentials in a URL, and what reaches MLflow -----------------------------------------


def test_credentials_in_api_base_are_refused(project: Path) -> None:
    path = edit(project, PROMPT, "  max_tokens: 32\n", "  max_tokens: 32\n  api_base: https://ada:hunter2@llm.example.com/v1\n")
    with pytest.raises(PromptFileError) as caught:
        promptops.load_prompt(NAME)
    message = str(caught.value)
    assert message.startswith(f"prompts/{NAME}.yaml:{line_of(path, 'api_base')}: model.api_base: the URL holds a user name or password")
    assert "put credentials in the environment" in message and "hunter2" not in message


def test_redaction_masks_url_credentials_and_bearer_tokens_and_keeps_yaml_loadable(monkeypatch: pytest.MonkeyPatch) -> None:
    from promptops._secrets import redact, redact_yaml
    from promptops.artifact import safe_load

    assert redact("GET https://ada:hunter2@host/v1 with Bearer abc123def456") == "GET https://***@host/v1 with Bearer ***"
    assert redact("Basic questions about the 2 cards") == "Basic questions about the 2 cards"
    monkeypatch.setenv("SERVICE_API_KEY", "abcdef123456")
    text = "name: x\nnote: abcdef123456\nlist: [sk-abcdefghijklmnop]\n"
    assert safe_load(redact_yaml(text)) == {"name": "x", "note": "***", "list": ["***"]}
    assert redact_yaml("name: x\n") == "name: x\n"


def test_everything_logged_to_mlflow_passes_the_secret_scrubber(project: Path, mlflow_store: str, monkeypatch) -> None:
    """An environment secret that turns up in a prompt's text (instructions, demos) is masked in the run's artifacts."""
    import mlflow

    from promptops import tracking
    from promptops.evaluation import EvalResult, ExampleResult

    secret = "zq-secret-value-0042"
    monkeypatch.setenv("MY_SERVICE_TOKEN", secret)
    prompt = promptops.load_prompt(NAME).with_changes(instructions=f"Route the message. Internal ref {secret}.")
    example = ExampleResult(0, "dev.jsonl:1", {"text": f"my key is {secret}"}, {"intent": "card_arrival"}, {"intent": "card_arrival"},
                            True, None, False, 10, 2, 0.1, 1, 0, 0.0)
    result = EvalResult(NAME, prompt.content_hash, "scripted", str(DEV), "dev", 1, "accuracy", 1.0, {"accuracy": 1.0}, 0.0,
                        10, 2, 0.1, 0.1, 1, 0, 0, 0, 0.1, (example,))
    run_id = tracking.log_eval(result, prompt, prompt_file=project / PROMPT)
    folder = Path(mlflow.artifacts.download_artifacts(run_id=run_id, tracking_uri=mlflow_store))
    texts = {path.name: path.read_text() for path in folder.rglob("*") if path.is_file()}
    assert texts and all(secret not in text for text in texts.values())
    assert "***" in texts[f"{NAME}.yaml"] and "***" in texts["predictions.json"]
    assert promptops.artifact._prompt.parse_prompt(texts[f"{NAME}.yaml"]).name == NAME  # still a prompt file


# --- 6. traces of a prompt that does not exist -------------------------------------------------


def test_traces_of_an_unknown_prompt_fail(project: Path, mlflow_store: str, assert_one_line_error) -> None:
    from promptops.runtime import ab_report

    line = assert_one_line_error(CliRunner().invoke(main, ["traces", "NOSUCHPROMPT"]))
    assert "unknown prompt 'NOSUCHPROMPT'" in line and NAME in line
    with pytest.raises(UnknownPromptError):
        ab_report("NOSUCHPROMPT")
    result = CliRunner().invoke(main, ["traces", NAME])
    assert result.exit_code == 0 and "no traces of banking_intent yet" in result.stdout


# --- 7. empty required inputs ----------------------------------------------------------------


@pytest.fixture()
def served(project: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultServer]:
    """The example prompts answered by a fault server on 127.0.0.1."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-bad-input-test-0123456789")
    with FaultServer() as server:
        for name in (NAME, "restaurant_booking"):
            edit(project, Path("prompts") / f"{name}.yaml", "  id: local/smollm2-135m\n", f"  id: openai/fault-model\n  api_base: {server.base_url}\n")
        yield server


@pytest.mark.parametrize("value", ["", "   ", "\n\t"])
def test_an_empty_required_input_is_refused_before_any_call(served: FaultServer, value: str) -> None:
    program = promptops.load(NAME, trace=False, cache=False)
    with pytest.raises(InputRejected, match=r"^banking_intent: input 'text' is empty: give it text"):
        program(text=value)
    assert served.log == [] and [d["decision"] for d in program.last_record.decisions] == ["input_rejected"]


def test_a_nullable_input_may_be_empty(served: FaultServer, project: Path) -> None:
    edit(project, Path("prompts") / "restaurant_booking.yaml", "  - name: asked_for\n", "  - name: asked_for\n    nullable: true\n")
    program = promptops.load("restaurant_booking", trace=False, cache=False)
    program(text="A table for two at 7pm", asked_for="")
    program(text="A table for two at 7pm", asked_for=None)
    assert len(served.log) == 2
    with pytest.raises(InputRejected, match="input 'text' is empty"):
        program(text=" ", asked_for="")


# --- 8. truncated answers --------------------------------------------------------------------


@pytest.fixture()
def cut_off(project: Path, scripted_model):
    """banking_intent answers from `scripted/cut-off`, a model that runs out of tokens on every other request."""
    from itertools import count

    from promptops.testing import Reply

    requests = count(1)

    def every_other_cut_off(request) -> Reply:
        cut = next(requests) % 2 == 1
        return Reply({"intent": "card_arrival"}, truncated=cut, input_tokens=50, output_tokens=32 if cut else 8)

    return scripted_model("cut-off", every_other_cut_off, prompts=[NAME])


def test_answers_that_hit_max_tokens_are_counted_reported_and_not_warned_twice(project: Path, mlflow_store: str, cut_off,
                                                                                caplog) -> None:
    import logging

    from promptops import tracking

    with caplog.at_level(logging.WARNING, logger="dspy.clients.lm"):
        result = promptops.evaluate(NAME, limit=6, threads=1, track=True)  # in order: every other call is cut off
    assert [e.truncated for e in result.examples] == [True, False] * 3
    assert (result.truncated, result.truncated_at_tokens) == (3, 32)
    assert result.truncation_warning == "3 answers hit max_tokens 32: raise model.max_tokens"
    assert not [r for r in caplog.records if "truncated" in r.getMessage()]  # reported once, by promptops
    assert tracking.load_run(result.run_id).data.metrics["truncated"] == 3
    assert tracking.load_table(result.run_id)["truncated"].tolist() == [True, False] * 3

    cli = CliRunner().invoke(main, ["eval", NAME, "--limit", "6", "--threads", "1", "--no-track", "--json"])
    summary = json.loads(cli.stdout)
    assert summary["truncated"] == 3 and summary["warnings"] == ["3 answers hit max_tokens 32: raise model.max_tokens"]
    table = CliRunner().invoke(main, ["eval", NAME, "--limit", "6", "--threads", "1", "--no-track"])
    assert "3 answers hit max_tokens 32: raise model.max_tokens" in table.stdout


def test_outside_an_eval_dspy_still_warns_about_truncation(cut_off, caplog) -> None:
    import logging

    from promptops.artifact import ModelSpec
    from promptops.models import build_lm
    from promptops.models._metered import metering

    lm = build_lm(ModelSpec(id=cut_off.model_id, max_tokens=32), cache=False)
    with caplog.at_level(logging.WARNING, logger="dspy.clients.lm"), metering() as meter:
        lm("hello")
    assert meter.truncated == 1 and meter.truncated_at_tokens == 32
    assert [r for r in caplog.records if "truncated" in r.getMessage()]


# --- 9. traces keep no megabyte ---------------------------------------------------------------


def test_traced_inputs_are_capped_with_their_size_recorded(served: FaultServer, project: Path, monkeypatch) -> None:
    import mlflow

    from promptops.runtime import _tracing as tracing

    edit(project, PROMPT, "eval:\n", "guardrails:\n  input: {max_chars: 5000}\neval:\n")
    program = promptops.load(NAME, trace=True, cache=False)
    huge = "where is my card " * 60_000  # about 1 MB
    with pytest.raises(InputRejected):
        program(text=huge)
    tracing.flush_traces()
    inputs, _ = tracing.root_inputs_outputs(tracing.get(program.last_trace_id))
    assert len(inputs["text"]) == tracing.MAX_TRACED_CHARS and inputs["text"].endswith(f"[cut: {len(huge):,} characters]")
    trace = mlflow.get_trace(program.last_trace_id, flush=True)  # what was logged, as MLflow has it
    root = next(span for span in trace.data.spans if span.parent_id is None)
    assert root.attributes["promptops.input_chars"] == len(huge)
    assert len(json.dumps(trace.to_dict())) < 20_000

    program(text="card " * 900)  # 4,500 characters, answered: DSPy's spans are cut too
    tracing.flush_traces()
    trace = mlflow.get_trace(program.last_trace_id, flush=True)
    assert all(len(json.dumps(span.inputs)) < 3 * tracing.MAX_TRACED_CHARS for span in trace.data.spans)


def test_scrubbing_a_cut_text_again_changes_nothing() -> None:
    from promptops.runtime import MAX_TRACED_CHARS, scrub

    once = scrub({"text": "x" * 10_000, "nested": [{"key": "sk-abcdefghijklmnop"}], "n": 3})
    assert scrub(once) == once and len(once["text"]) == MAX_TRACED_CHARS and once["nested"] == [{"key": "***"}]


# --- issue 25: the MLflow store ---------------------------------------------------------------
# A store that does not answer, a damaged or read-only database, a folder that is not there: one sentence naming
# the store and where it was set, in seconds (one request, no retries), and an eval whose run cannot be logged is
# still shown and saved.

UNREACHABLE = "http://ada:hunter2@127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once
STORE_CHECK_S = 30.0  # what a refused store may take, imports included; MLflow's own retries took over 200 s


def _changed_prompt(root: Path) -> None:
    edit(root, PROMPT, "Read the customer's message", "Read the message")


def status_store_problem() -> str:
    """`status` on a store that fails its check: the prompts from git, then the store's one `problem` line; exit 1, no
    traceback, nothing on stderr. Returns the line without its `problem ` prefix."""
    result = CliRunner().invoke(main, ["status"], env={"COLUMNS": "1000"})  # wide: no line is wrapped
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and result.stderr.strip() == "", result.stderr
    assert NAME in result.stdout  # the rows git knows are still listed
    problems = [line.removeprefix("problem ") for line in result.stdout.splitlines() if line.startswith("problem ")]
    assert len(problems) == 1, result.stdout
    return problems[0]


@pytest.mark.parametrize("args", [
    ["versions", NAME],
    ["traces", NAME],
    ["eval", NAME, "--limit", "2"],
    ["run", NAME, "-i", "text=where is my card?"],
    ["compare", f"{NAME}@v1", NAME, "--limit", "2"],
    ["check", "--limit", "2"],
    ["optimize", "tiny", "--no-write"],
    ["judge", "check", "judges/ticket_title.yaml", "--data", "labelled.jsonl"],
    ["promote", NAME, "--version", "v1"],
    ["rollback", NAME],
    ["sync"],
], ids=lambda args: args[0] if args[0] != "judge" else "judge check")
def test_an_unreachable_tracking_server_is_one_line_in_seconds_before_any_model_call(
        args: list[str], git_project, scripted_model, write_experiment, monkeypatch, assert_one_line_error) -> None:
    import time

    root = Path(git_project.working_tree_dir)
    model = scripted_model("card-arrival", lambda request: {"intent": "card_arrival"}, prompts=[NAME])
    write_experiment()
    _changed_prompt(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", UNREACHABLE)
    started = time.monotonic()
    line = assert_one_line_error(CliRunner().invoke(main, args))
    assert time.monotonic() - started < STORE_CHECK_S
    assert line == ("Error: the MLflow tracking server http://***@127.0.0.1:9 (set by MLFLOW_TRACKING_URI) cannot be reached"
                    " (connection refused): start it, or point MLFLOW_TRACKING_URI at another store"), line
    assert model.requests == []  # checked before any model call: nothing was paid for
    assert not (root / "optuna.db").exists() and not (root / "unlogged-runs").exists()


def test_status_on_an_unreachable_tracking_server_says_so_in_one_problem_line(git_project, monkeypatch) -> None:
    import time

    monkeypatch.setenv("MLFLOW_TRACKING_URI", UNREACHABLE)
    started = time.monotonic()
    line = status_store_problem()
    assert time.monotonic() - started < STORE_CHECK_S
    assert line == ("the MLflow tracking server http://***@127.0.0.1:9 (set by MLFLOW_TRACKING_URI) cannot be reached"
                    " (connection refused): start it, or point MLFLOW_TRACKING_URI at another store")


class _Unavailable(BaseHTTPRequestHandler):
    """A tracking server whose backend is down: 503 to everything, the status MLflow retries with backoff."""

    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        type(self).requests.append(self.path)
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def unavailable_server() -> Iterator[str]:
    """`http://127.0.0.1:PORT` of a server that answers 503 to every request; `_Unavailable.requests` lists them."""
    import threading
    from http.server import ThreadingHTTPServer

    _Unavailable.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_tracking_server_that_answers_503_is_asked_once_not_retried(
        git_project, unavailable_server: str, monkeypatch, assert_one_line_error, caplog) -> None:
    import logging
    import time

    monkeypatch.setenv("MLFLOW_TRACKING_URI", unavailable_server)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        line = assert_one_line_error(CliRunner().invoke(main, ["versions", NAME]))
    assert time.monotonic() - started < STORE_CHECK_S
    assert line == (f"Error: the MLflow tracking server {unavailable_server} (set by MLFLOW_TRACKING_URI) answered HTTP 503 to"
                    " a search for experiments: check that it is an MLflow tracking server, and its log")
    assert len(_Unavailable.requests) == 1 and "/api/2.0/mlflow/experiments/search" in _Unavailable.requests[0]
    assert not [record for record in caplog.records if "Retrying" in record.getMessage()]  # urllib3's retry warnings


def test_a_tracking_server_that_never_answers_is_given_up_after_the_timeout(
        git_project, monkeypatch, assert_one_line_error) -> None:
    import socket
    import time

    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")  # the user's own, shorter than the check's 5 s
        started = time.monotonic()
        line = assert_one_line_error(CliRunner().invoke(main, ["versions", NAME]))
        assert time.monotonic() - started < STORE_CHECK_S
    assert line == (f"Error: the MLflow tracking server {url} (set by MLFLOW_TRACKING_URI) did not answer within 1 s: check that"
                    " it is up and reachable from here, or point MLFLOW_TRACKING_URI at another store")
    import os

    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "1"  # the check's settings are put back


def test_a_damaged_store_is_one_line_naming_the_file(git_project, tmp_path: Path, monkeypatch, assert_one_line_error) -> None:
    root = Path(git_project.working_tree_dir)
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(bytes(range(256)) * 64)  # garbage, not sqlite's header
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{damaged}")
    line = status_store_problem()
    assert line == (f"the MLflow store {damaged} (set by MLFLOW_TRACKING_URI) is not a database sqlite can read"
                    " (damaged, or another kind of file): move it aside and a new store starts there, or point"
                    " MLFLOW_TRACKING_URI at another store")
    assert assert_one_line_error(CliRunner().invoke(main, ["traces", NAME])) == f"Error: {line}"

    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the project's own store, mlflow.db at its root
    (root / "mlflow.db").write_bytes(b"not a database\n" * 100)
    line = status_store_problem()
    assert line.startswith("the MLflow store mlflow.db (the project's default store) is not a database sqlite can read")


def test_a_store_in_a_folder_that_does_not_exist_is_one_line(git_project, tmp_path: Path, monkeypatch, assert_one_line_error) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{missing}/mlflow.db")
    line = status_store_problem()
    assert line == (f"the MLflow store sqlite:///{missing}/mlflow.db (set by MLFLOW_TRACKING_URI) is in a folder that"
                    f" does not exist, {missing}: create the folder, or point MLFLOW_TRACKING_URI at another store")
    assert not missing.exists()

    missing.mkdir(parents=True)
    (missing / "mlflow.db").mkdir()
    assert "is a folder, not a database file" in assert_one_line_error(CliRunner().invoke(main, ["versions", NAME]))


@pytest.fixture()
def unwritable() -> Iterator[Callable[[Path], Path]]:
    """`unwritable(path)`: the file can no longer be written, until the test ends; returns the path.

    As root, permission bits do not stop a write (CI runs as root): the file is made immutable (`chattr +i`, undone
    after the test), so sqlite opens it read-only as it would a file without write permission. Skipped where neither
    works."""
    import os
    import subprocess

    locked: list[Path] = []

    def lock(path: Path) -> Path:
        locked.append(path)
        if os.geteuid() != 0:
            path.chmod(0o444)
            return path
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot make a file read-only as root here (chattr +i: {done.stderr.strip()})")
        return path

    try:
        yield lock
    finally:
        for path in locked:
            writable_again(path)


def writable_again(path: Path) -> None:
    """Undo `unwritable(path)`."""
    import os
    import subprocess

    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], check=False, capture_output=True)
    path.chmod(0o644)


@pytest.fixture()
def read_only_store(unwritable, monkeypatch) -> Callable[[Path], str]:
    """`read_only_store(db)`: a copy of the sqlite store `db` that cannot be written, as a fresh MLFLOW_TRACKING_URI.

    A copy, because MLflow keeps its connections open per URI, and one opened for writing fails otherwise
    ("disk I/O error") than a process that finds the file read-only does."""
    import shutil

    def read_only(db: Path) -> str:
        copy = db.with_name(f"read-only-{db.name}")
        shutil.copy(db, copy)
        uri = f"sqlite:///{unwritable(copy)}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        return uri

    return read_only


def test_an_eval_that_cannot_be_logged_is_shown_and_saved(
        project: Path, mlflow_store: str, scripted_model, read_only_store, monkeypatch, assert_one_line_error) -> None:
    from promptops import tracking

    model = scripted_model("card-arrival", lambda request: {"intent": "card_arrival"}, prompts=[NAME])
    monkeypatch.setenv("MY_SERVICE_TOKEN", "zq-secret-value-0042")  # in the prompt's text: masked in the file, as in MLflow
    edit(project, PROMPT, "Read the customer's message", "Internal ref zq-secret-value-0042. Read the customer's message")
    promptops.evaluate(NAME, limit=1)  # the store and the prompt's experiment exist, as after any eval
    uri = read_only_store(Path(mlflow_store.removeprefix("sqlite:///")))
    paid = len(model.requests)

    result = CliRunner().invoke(main, ["eval", NAME, "--limit", "3", "--no-cache"])
    assert len(model.requests) == paid + 3
    assert f"{NAME} on dev: 3 examples" in result.stdout and "accuracy" in result.stdout  # the usual table
    line = assert_one_line_error(result)
    saved = sorted((project / "unlogged-runs").glob(f"eval-{NAME}-*.json"))
    assert len(saved) == 1
    assert line == (f"Error: cannot log the eval to MLflow at {uri}: attempt to write a readonly database;"
                    f" the results are saved in unlogged-runs/{saved[0].name} instead")
    record = json.loads(saved[0].read_text())
    assert (record["kind"], record["name"], record["params"]["n"], record["tracking_uri"]) == ("eval", NAME, 3, uri)
    assert record["tables"]["predictions.json"]["predicted.intent"] == ["card_arrival"] * 3
    assert record["metrics"]["accuracy"] == pytest.approx(sum(
        expected == "card_arrival" for expected in record["tables"]["predictions.json"]["expected.intent"]) / 3)
    assert "zq-secret-value-0042" not in saved[0].read_text() and "Internal ref ***." in record["texts"][f"prompt/{NAME}.yaml"]

    as_json = CliRunner().invoke(main, ["eval", NAME, "--limit", "2", "--json"])
    assert json.loads(as_json.stdout)["n"] == 2 and json.loads(as_json.stdout)["run_id"] is None
    assert "the results are saved in unlogged-runs/eval-banking_intent-" in assert_one_line_error(as_json)
    assert len(list((project / "unlogged-runs").glob("*.json"))) == 2

    with pytest.raises(promptops.errors.UnloggedError) as caught:  # the API: the result rides on the error
        promptops.evaluate(NAME, limit=1)
    assert caught.value.result.n == 1 and caught.value.saved_to.is_file()
    assert tracking.last_evals(NAME)  # reading a read-only store is fine


def test_a_comparison_that_cannot_be_logged_is_shown_and_saved(
        git_project, mlflow_store: str, literal_model, read_only_store, assert_one_line_error) -> None:
    root = Path(git_project.working_tree_dir)
    promptops.evaluate(NAME, limit=1)
    read_only_store(Path(mlflow_store.removeprefix("sqlite:///")))
    _changed_prompt(root)
    result = CliRunner().invoke(main, ["compare", f"{NAME}@v1", NAME, "--limit", "3"])
    assert f"## {NAME}: v1" in result.stdout  # the comparison, as markdown
    line = assert_one_line_error(result, "cannot log the comparison to MLflow at", "attempt to write a readonly database")
    [saved] = (root / "unlogged-runs").glob(f"compare-{NAME}-*.json")
    assert line.endswith(f"the results are saved in unlogged-runs/{saved.name} instead")
    assert json.loads(saved.read_text())["params"]["n"] == 3


def test_a_study_whose_store_fails_mid_trial_keeps_the_trial_and_resumes_without_redoing_it(
        git_project, mlflow_store: str, scripted_model, unwritable, commit_all) -> None:
    import optuna

    from promptops.errors import TrackingError

    root = Path(git_project.working_tree_dir)
    model = scripted_model("card-arrival", lambda request: {"intent": "card_arrival"}, prompts=[NAME])  # the reference too
    for split, rows in (("dev", 6), ("test", 4)):
        path = root / DEV.with_name(f"{split}.jsonl")
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:rows]))
    (root / "experiments" / "tiny.yaml").write_text(
        SPACE.replace("[local/smollm2-135m]", f"[{model.model_id}]") + "  demos: [1]\n  train_limit: 4\nbudget:\n  n_trials: 2\n")
    commit_all("A tiny study on a scripted model")
    store = Path(mlflow_store.removeprefix("sqlite:///"))
    locked: list[Path] = []

    def fail_the_store_while_scoring(progress) -> None:
        if progress.stage.startswith("scoring") and not locked:
            locked.append(unwritable(store))  # as a disk that fails: the trial's result cannot reach MLflow

    with pytest.raises(TrackingError) as caught:
        promptops.optimize("tiny", write_winner=False, on_progress=fail_the_store_while_scoring)
    message = str(caught.value)
    assert message.startswith(f"cannot log a trial in MLflow at {mlflow_store}: ")
    assert message.endswith(f"the study promptops/tiny/1 keeps every finished trial (sqlite:///{root / 'optuna.db'}): once the"
                            " store takes writes again, continue it with promptops optimize tiny --resume")
    [study] = optuna.get_all_study_summaries(f"sqlite:///{root / 'optuna.db'}")
    trials = optuna.load_study(study_name=study.study_name, storage=f"sqlite:///{root / 'optuna.db'}").trials
    assert [t.state.name for t in trials] == ["COMPLETE"]  # its model calls were paid: the study has the result
    paid = len(model.requests)

    writable_again(store)
    resumed = promptops.optimize("tiny", resume=True, write_winner=False)
    assert [t.state for t in resumed.study.trials] == ["COMPLETE", "COMPLETE"]  # trial 0 is not redone
    assert resumed.study.trials[0].number == 0 and len(model.requests) > paid

# --- issue 25: paths and tracebacks ---------------------------------------------------------------
# A prompt reference names a file in prompts/ and nothing else; ordinary states of the disk and of git (a folder or a
# broken symlink where the prompt file should be, a committed version that is not UTF-8, no git program, a stale
# index.lock, a read-only .git or project folder) and a metric that does not fit the prompt are one line each.

OUTSIDE = "is outside the project's prompts folder (prompts/)"


@pytest.mark.parametrize("reference", ["../../../../../../../../etc/passwd", "/etc/hostname", f"../{NAME}", "prompts/../../x"])
def test_a_prompt_reference_outside_prompts_is_refused_by_every_reader(project: Path, reference: str) -> None:
    from promptops.errors import PromptReferenceError

    for read in (promptops.load_prompt, promptops.show, promptops.versions, lambda ref: promptops.load(ref, trace=False),
                 lambda ref: promptops.load(f"{ref}@production", trace=False)):  # not looked up in the registry either
        with pytest.raises(PromptReferenceError) as caught:
            read(reference)
        assert str(caught.value) == (f"{reference!r} {OUTSIDE}: a prompt is named by its file there, for example "
                                     "`banking_agent` for prompts/banking_agent.yaml")


def test_a_path_to_the_prompt_file_inside_prompts_still_names_it(project: Path) -> None:
    from promptops.errors import PromptReferenceError

    for reference in (NAME, f"prompts/{NAME}.yaml", project / "prompts" / f"{NAME}.yaml", f"prompts/../prompts/{NAME}.yaml"):
        assert promptops.load_prompt(reference).name == NAME
    (project.parent / f"{NAME}.yaml").write_text((project / PROMPT).read_text())  # the same file, outside prompts/
    for reference in (f"../{NAME}.yaml", f"{NAME}.yaml", str(project.parent / f"{NAME}.yaml")):
        with pytest.raises(PromptReferenceError) as caught:
            promptops.load_prompt(reference)
        assert str(caught.value) == (f"{reference!r} is not in the project's prompts folder (prompts/): name the prompt "
                                     f"instead, as `{NAME}` for prompts/{NAME}.yaml")


def test_a_symlinked_prompt_file_is_read_only_if_it_stays_inside_the_project(project: Path) -> None:
    from promptops.errors import PromptReferenceError

    prompt_file = project / PROMPT
    shared = project / "shared" / f"{NAME}.yaml"
    shared.parent.mkdir()
    prompt_file.rename(shared)
    prompt_file.symlink_to(Path("..") / "shared" / f"{NAME}.yaml")
    assert promptops.load_prompt(NAME).name == NAME and promptops.show(NAME).path == prompt_file

    outside = project.parent / f"{NAME}.yaml"
    shared.rename(outside)
    prompt_file.unlink()
    prompt_file.symlink_to(outside)
    with pytest.raises(PromptReferenceError) as caught:
        promptops.load(NAME, trace=False)
    assert str(caught.value) == (f"prompts/{NAME}.yaml leads to {outside}, outside the project ({project}); "
                                 "copy the file into prompts/ instead of linking it")
    listed = {listing.name: listing.error for listing in promptops.list_prompts()}
    assert listed[NAME] == str(caught.value)  # listed with its error, its content not read


def test_check_fails_a_prompt_file_linked_out_of_the_project_without_reading_it(git_project, mlflow_store: str) -> None:
    from promptops.versioning import check

    root = Path(git_project.working_tree_dir)
    outside = root.parent / f"{NAME}.yaml"
    (root / PROMPT).rename(outside)
    (root / PROMPT).symlink_to(outside)
    rows = {row.prompt: row for row in check(limit=2, track=False).checks}
    assert rows[NAME].reasons == (f"prompts/{NAME}.yaml leads to {outside}, outside the project ({root}); "
                                  "copy the file into prompts/ instead of linking it",)


@pytest.mark.parametrize(("make", "message"), [
    (lambda path: path.symlink_to("gone.yaml"),
     "a broken symlink (its target gone.yaml does not exist); point it at a prompt file or remove it"),
    (lambda path: (path.symlink_to("loop.yaml"), path.with_name("loop.yaml").symlink_to(path.name)),
     "a symlink that loops back on itself (to loop.yaml); point it at a prompt file or remove it"),
    (lambda path: path.mkdir(),
     "a folder, not a prompt file; a prompt is one YAML file, so remove or rename the folder"),
], ids=["broken symlink", "looping symlink", "folder"])
def test_a_prompt_file_that_cannot_be_read_says_what_it_is(project: Path, make, message: str) -> None:
    path = project / PROMPT
    path.unlink()
    make(path)
    for read in (promptops.load_prompt, promptops.show, lambda ref: promptops.load(ref, trace=False)):
        with pytest.raises(PromptFileError) as caught:
            read(NAME)
        assert str(caught.value) == f"prompts/{NAME}.yaml: {message}"  # not "unknown prompt ...; known prompts: ..."
    listed = {listing.name: listing.error for listing in promptops.list_prompts()}
    assert listed[NAME] == f"prompts/{NAME}.yaml: {message}" and listed["restaurant_booking"] is None


def test_an_experiment_names_its_prompt_and_never_a_path(project: Path) -> None:
    from promptops.optimizer import ExperimentFileError, load_experiment

    (project / "experiments" / "tiny.yaml").write_text(SPACE.replace(f"prompt: {NAME}", "prompt: ../../etc/passwd"))
    with pytest.raises(ExperimentFileError) as caught:
        load_experiment("tiny")
    assert str(caught.value) == ("experiments/tiny.yaml:2: prompt: '../../etc/passwd' is not a prompt's name; write the "
                                 "name of a file in prompts/ (banking_intent for prompts/banking_intent.yaml)")


def _commit_latin1_version(root: Path) -> tuple[str, int, int]:
    """v2 of the prompt saved as Latin-1 (é as byte 0xe9), v3 back to UTF-8; returns v2's sha, and the line and column."""
    import git

    repo = git.Repo(root)
    path = root / PROMPT
    good = path.read_bytes()
    path.write_bytes(good.replace(b"support router", b"support caf\xe9 router", 1))
    repo.git.add(str(path))
    v2 = git_commit(repo, "Saved as Latin-1")
    path.write_bytes(good)
    repo.git.add(str(path))
    git_commit(repo, "Back to UTF-8")
    line = next(number for number, text in enumerate(good.splitlines(), 1) if b"support router" in text)
    return v2, line, good.splitlines()[line - 1].index(b"support router") + len("support caf") + 1


def test_a_committed_version_that_is_not_utf8_is_named_by_show_diff_and_load(git_project) -> None:
    v2, line, column = _commit_latin1_version(Path(git_project.working_tree_dir))
    message = (f"prompts/{NAME}.yaml@{v2[:8]}:{line}: not UTF-8 text (byte 0xe9 at column {column}); "
               "this version cannot be read, so use another one (or commit the file again as UTF-8)")
    for read in (lambda: promptops.show(f"{NAME}@v2"), lambda: promptops.diff(f"{NAME}@v1", f"{NAME}@v2"),
                 lambda: promptops.load(f"{NAME}@v2", trace=False)):
        with pytest.raises(PromptFileError) as caught:
            read()
        assert str(caught.value) == message
    assert "support router" in promptops.show(f"{NAME}@v3").text and not promptops.diff(f"{NAME}@v1", f"{NAME}@v3").changes
    assert promptops.versions(NAME).columns["problem"] == {2: f"invalid: {message}"}  # listed, not a failure of `versions`


def _without_git(tmp_path: Path) -> dict[str, str]:
    """The environment with a PATH on which there is no git program."""
    import os

    empty = tmp_path / "bin-without-git"
    empty.mkdir(exist_ok=True)
    environment = {**os.environ, "PATH": str(empty)}
    environment.pop("GIT_PYTHON_GIT_EXECUTABLE", None)
    return environment


def test_without_a_git_program_a_command_says_so_in_one_line(git_project, tmp_path: Path) -> None:
    import subprocess
    import sys

    for args, cwd in ((["versions", NAME], git_project.working_tree_dir), (["init", "fresh"], tmp_path)):
        done = subprocess.run([sys.executable, "-m", "promptops", *args], cwd=cwd, env=_without_git(tmp_path),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and done.stderr.splitlines() == [
            "Error: promptops needs the git program, which is not on PATH: install git, or set GIT_PYTHON_GIT_EXECUTABLE "
            "to the full path of the git executable"], done.stderr
    assert not (tmp_path / "fresh").exists()  # init said so before writing anything


def test_a_stale_index_lock_refuses_a_promote_and_changes_nothing(
        git_project, mlflow_store: str, pass_the_gate, registry_label, assert_one_line_error) -> None:
    pass_the_gate()
    lock = Path(git_project.git_dir) / "index.lock"
    lock.touch()
    head, status = git_project.head.commit.hexsha, git_project.git.status("--porcelain")
    line = assert_one_line_error(CliRunner().invoke(main, ["promote", NAME]))
    root = git_project.working_tree_dir
    assert line == (f"Error: git's index is locked ({root}/.git/index.lock exists): another git command is running in {root}, "
                    "or one was killed and left the file; wait for it to end, or remove the file if no git command is running, "
                    "then run again")
    assert (git_project.head.commit.hexsha, git_project.git.status("--porcelain"), registry_label()) == (head, status, None)
    lock.unlink()
    assert CliRunner().invoke(main, ["promote", NAME]).exit_code == 0 and registry_label() == "v1"


@pytest.mark.parametrize("lock_file_there", [False, True], ids=["first promote", "lock file left by an earlier one"])
def test_a_read_only_git_folder_refuses_a_promote_naming_it(
        git_project, mlflow_store: str, pass_the_gate, registry_label, read_only, assert_one_line_error,
        lock_file_there: bool) -> None:
    pass_the_gate()
    git_dir = Path(git_project.git_dir)
    if lock_file_there:
        (git_dir / "promptops.lock").touch()
    head, status = git_project.head.commit.hexsha, git_project.git.status("--porcelain")
    read_only(git_dir)
    line = assert_one_line_error(CliRunner().invoke(main, ["promote", NAME]))
    written = "promptops-move.json" if lock_file_there else "promptops.lock"
    assert line == f"Error: cannot write .git/{written}: permission denied; make .git writable for this user, or run as its owner"
    assert (git_project.head.commit.hexsha, git_project.git.status("--porcelain"), registry_label()) == (head, status, None)


def test_init_in_a_read_only_folder_or_a_locked_repository_leaves_nothing_behind(
        tmp_path: Path, monkeypatch, read_only, assert_one_line_error) -> None:
    import git

    monkeypatch.chdir(tmp_path)
    (tmp_path / "locked").mkdir()
    read_only(tmp_path / "locked")
    line = assert_one_line_error(CliRunner().invoke(main, ["init", "locked"]))
    assert line == "Error: cannot write locked/README.md: permission denied; make locked writable for this user, or run as its owner"
    assert not any((tmp_path / "locked").iterdir())

    clone = tmp_path / "clone"
    repo = git.Repo.init(clone)
    (clone / "README.md").write_text("Ours.\n")
    (Path(repo.git_dir) / "index.lock").touch()
    line = assert_one_line_error(CliRunner().invoke(main, ["init", "clone"]))
    assert line.startswith("Error: git could not commit experiments/card_intent.yaml, experiments/data/card_intent/")
    assert line.endswith(f"more files: git's index is locked ({clone}/.git/index.lock exists): another git command is running, "
                         "or one was killed and left the file; wait for it to end, or remove the file if no git command is "
                         "running, then run again")
    assert sorted(path.name for path in clone.iterdir()) == [".git", "README.md"] and (clone / "README.md").read_text() == "Ours.\n"
    (Path(repo.git_dir) / "index.lock").unlink()
    assert CliRunner().invoke(main, ["init", "clone"]).exit_code == 0  # nothing left in the way


def test_similarity_on_a_prompt_without_free_text_output_is_refused_before_any_call(project: Path) -> None:
    from promptops.errors import MetricError

    with pytest.raises(MetricError) as caught:
        promptops.evaluate(NAME, metric="similarity", track=False)
    assert str(caught.value) == ("metric 'similarity' compares free-text answers with their references, but prompt "
                                 "'banking_intent' has no string output (its outputs: intent (enum)); use accuracy or f1")


# --- issue 25: silent accepts and misleading messages ------------------------------------------

INSTRUCTIONS = ("instructions: |\n  You are a bank's support router. Read the customer's message and answer with the one intent"
                " label that fits it best.\n")
LABELS = re.compile(r"    values:\n(?:      - .*\n)+")


@pytest.mark.parametrize("blank", ["''", "'  \t '", "|\n  \n"])
def test_blank_instructions_are_refused_at_their_line(project: Path, blank: str) -> None:
    edit(project, PROMPT, INSTRUCTIONS, f"instructions: {blank}\n")
    with pytest.raises(PromptFileError) as caught:
        promptops.load_prompt(NAME)
    assert str(caught.value) == (f"prompts/{NAME}.yaml:3: instructions: the text is blank: write what the model should do with"
                                 " the inputs")


def test_an_enum_chooses_among_distinct_labels(project: Path) -> None:
    path = project / PROMPT
    original = path.read_text()
    edit(project, PROMPT, "      - change_pin\n", "      - card_arrival\n")
    with pytest.raises(PromptFileError) as caught:
        promptops.load_prompt(NAME)
    assert str(caught.value) == f"prompts/{NAME}.yaml:15: outputs[0].values[2]: label 'card_arrival' repeats values[0]; list each label once"

    path.write_text(LABELS.sub("    values: [card_arrival]\n", original))
    with pytest.raises(PromptFileError) as caught:
        promptops.load_prompt(NAME)
    assert str(caught.value).startswith(f"prompts/{NAME}.yaml:12: outputs[0].values: enum field 'intent' has one label"
                                        " ('card_arrival'), so there is nothing to choose")
    path.write_text(LABELS.sub("    values: [card_arrival]\n    nullable: true\n", original))  # the label, or null
    assert promptops.load_prompt(NAME).outputs[0].values == ["card_arrival"]


@pytest.mark.parametrize(
    ("metric", "threshold", "message"),
    [
        ("accuracy", "60", "eval.threshold: 60 is above 1, the best accuracy score: write 60% as 0.6"),
        ("accuracy", "-0.1", "eval.threshold: -0.1 is outside 0 to 1, the range of accuracy scores"),
        ("f1", "1.5", "eval.threshold: 1.5 is above 1, the best f1 score: write 1.5% as 0.015"),
        ("similarity", "-2", "eval.threshold: -2 is outside -1 to 1, the range of similarity scores"),
        ("\n    judge: judges/ticket_title.yaml", "4", "eval.threshold: 4 is outside 0 to 1, the range of judge scores"),
    ],
)
def test_a_threshold_the_metric_cannot_reach_is_refused(project: Path, metric: str, threshold: str, message: str) -> None:
    path = edit(project, PROMPT, "  metric: accuracy\n", f"  metric: {metric}\n  threshold: {threshold}\n")
    with pytest.raises(PromptFileError) as caught:
        promptops.load_prompt(NAME)
    assert str(caught.value).startswith(f"prompts/{NAME}.yaml:{line_of(path, 'threshold')}: {message}"), str(caught.value)


def test_a_user_metric_may_have_any_threshold(project: Path) -> None:
    edit(project, PROMPT, "  metric: accuracy\n", "  metric: metrics:points\n  threshold: 60\n")
    assert promptops.load_prompt(NAME).eval.threshold == 60


def test_a_row_key_that_is_no_field_is_refused_with_the_closest_one(project: Path) -> None:
    from promptops.evaluation import load_dataset

    path = project / "rows.jsonl"
    fine = {"text": "where is my card", "intent": "card_arrival", "split": "dev", "trace_id": "tr-1", "_note": "from a call"}

    def rows(*extra: dict) -> None:
        path.write_text("".join(json.dumps(row) + "\n" for row in (fine, *extra)))

    rows({"text": "my pin", "intnet": "change_pin", "split": "dev"})
    with pytest.raises(DatasetError, match=r"^rows.jsonl:2: unknown key 'intnet'; did you mean 'intent'\?$"):
        load_dataset(promptops.load_prompt(NAME), path, "dev")
    rows({"text": "my pin", "intent": "change_pin", "colour": "blue", "split": "dev"})
    with pytest.raises(DatasetError) as caught:
        load_dataset(promptops.load_prompt(NAME), path, "dev")
    assert str(caught.value) == ("rows.jsonl:2: unknown key 'colour': a row holds banking_intent's fields (text, intent) and"
                                 " optionally split, trace_id, expected_tools; start a note's name with _ (_colour)")
    rows()
    assert len(load_dataset(promptops.load_prompt(NAME), path, "dev")) == 1  # split, trace_id and a _note are fine

    # A free-text prompt's row without its output is judged by the rubric alone: a misspelt output must not make one.
    (project / "titles.jsonl").write_text(json.dumps({"text": "card?", "summry": "Card arrival", "split": "dev"}) + "\n")
    with pytest.raises(DatasetError, match=r"^titles.jsonl:1: unknown key 'summry'; did you mean 'summary'\?$"):
        load_dataset(promptops.load_prompt("banking_summary"), project / "titles.jsonl", "dev")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("text,intent,text,split\ncard?,card_arrival,x,dev\n",
         "cases.csv:1: column 'text' appears twice in the header (columns 1 and 3); rename or remove one"),
        ("\ntext,intnet,split\ncard?,card_arrival,dev\n", "cases.csv:2: unknown column 'intnet'; did you mean 'intent'?"),
        ("text,intent,split\ncard?,card_arrival,dev\n\"where is my card,card_arrival,dev\nmy pin,change_pin,dev\n",
         "cases.csv:3: a quote opens here and is never closed: close it, or double a quote that is part of the text (\"\")"),
        ("text,intent,split\n\"two\nlines\",card_arrival,dev\nmy \"\"pin\"\",change_pin,\"dev\n",
         "cases.csv:4: a quote opens here and is never closed"),
        ("text,intent,split\n\"card\" now,card_arrival,dev\n", "cases.csv:2: not valid CSV: ',' expected after '\"'"),
        ("text,intent,split\ncard?,card_arrival\n", "cases.csv:2: this row has 2 cells and the header 3"),
    ],
    ids=["column twice", "unknown column", "unclosed quote", "unclosed after a quoted line break", "text after a quote",
         "missing cell"],
)
def test_a_csv_file_is_read_strictly(project: Path, content: str, message: str) -> None:
    from promptops.evaluation import load_dataset

    (project / "cases.csv").write_text(content)
    with pytest.raises(DatasetError) as caught:
        load_dataset(promptops.load_prompt(NAME), project / "cases.csv", "dev")
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_csv_row_is_numbered_by_its_first_line(project: Path) -> None:
    from promptops.evaluation import load_dataset

    (project / "cases.csv").write_text('text,intent,split\n"my card,\nstill not here",card_arrival,dev\n"my ""pin""",change_pin,dev\n')
    dataset = load_dataset(promptops.load_prompt(NAME), project / "cases.csv", "dev")
    assert [(e.source, e.inputs["text"]) for e in dataset.examples] == [
        ("cases.csv:2", "my card,\nstill not here"), ("cases.csv:4", 'my "pin"')]


@pytest.mark.parametrize(
    ("objectives", "message"),
    [
        ("{cost_usd: minimize, accuracy: maximize}", "objectives.cost_usd: the first objective must be the quality metric"
                                                     " (e.g. accuracy or f1), then the costs"),
        ("{cost: minimize, accuracy: maximize}", "objectives.cost: the first objective must be the quality metric"),
        ("{accuracy: maximize, cost: minimize}", "objectives.cost: unknown objective 'cost'; did you mean 'cost_usd'?"),
        ("{accuracy: maximize, cost_usd: minimize, f1: maximize}", "objectives.f1: 'f1' is a quality metric, which only the"
                                                                   " first objective can be"),
        ("{accuracy: maximize, speed: minimize}", "objectives.speed: unknown objective 'speed': after the quality metric, use"
                                                  " cost_usd, latency_p50_s, latency_p95_s, tokens"),
    ],
)
def test_objectives_in_the_wrong_order_say_so(project: Path, objectives: str, message: str) -> None:
    from promptops.optimizer import load_experiment

    (project / "experiments" / "tiny.yaml").write_text(SPACE + f"objectives: {objectives}\n")
    with pytest.raises(PromptopsError) as caught:
        load_experiment("tiny")
    assert str(caught.value).startswith(f"experiments/tiny.yaml:6: {message}"), str(caught.value)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("  id: local/smollm2-135m", "  id: gpt5", "prompts/banking_intent.yaml:22: model.id: unknown model 'gpt5': use"),
        ("  id: local/smollm2-135m", "  id: local/gpt-5", "prompts/banking_intent.yaml:22: model.id: unknown local model 'local/gpt-5'"),
        ("  metric: accuracy", "  metric: bleu", "prompts/banking_intent.yaml:27: eval.metric: unknown metric 'bleu'"),
        ("  metric: accuracy", "  metric: metrics:nowhere", "prompts/banking_intent.yaml:27: eval.metric: metric 'metrics:nowhere':"
                                                            " cannot import 'metrics'"),
        ("  data: experiments/data/banking_intent", "  data: experiments/data/nowhere",
         "prompts/banking_intent.yaml:26: eval.data: experiments/data/nowhere: no such dataset file or folder"),
        ("  max_tokens: 32", "  max_tokens: 32\n  params: {top_p: 0.9, temprature: 0.3}",
         "prompts/banking_intent.yaml:25: model.params.temprature: unknown parameter; did you mean 'temperature'?"),
    ],
)
def test_a_value_the_prompt_file_sets_is_reported_at_its_line(project: Path, old: str, new: str, message: str) -> None:
    edit(project, PROMPT, old, new)
    with pytest.raises(PromptopsError) as caught:
        promptops.evaluate(NAME, limit=1, track=False)
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_value_passed_in_is_not_blamed_on_the_file(project: Path) -> None:
    from promptops.errors import MetricError, UnknownModelError

    with pytest.raises(UnknownModelError, match=r"^unknown model 'gpt5'"):
        promptops.evaluate(NAME, model="gpt5", track=False)
    with pytest.raises(MetricError, match=r"^unknown metric 'bleu'"):
        promptops.evaluate(NAME, metric="bleu", track=False)
    with pytest.raises(DatasetError, match=r"^nowhere.jsonl: no such dataset file or folder$"):
        promptops.evaluate(NAME, data="nowhere.jsonl", track=False)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("prompt: banking_intent\n", "prompt: banking_intnet\n", "experiments/tiny.yaml:2: prompt: unknown prompt 'banking_intnet'"),
        ("prompt: banking_intent\n", "prompt: banking_intent\ndata: nowhere.jsonl\n",
         "experiments/tiny.yaml:3: data: nowhere.jsonl: no such dataset file or folder"),
        ("prompt: banking_intent\n", "prompt: banking_intent\nmetric: bleu\n", "experiments/tiny.yaml:3: metric: unknown metric 'bleu'"),
        ("[local/smollm2-135m]", "[local/smollm2-135m, gpt5]", "experiments/tiny.yaml:4: search.models[1].id: unknown model 'gpt5'"),
        ("[local/smollm2-135m]", "\n    - {id: local/smollm2-135m, params: {top_kk: 4}}",
         "experiments/tiny.yaml:5: search.models[0].params.top_kk: unknown parameter; did you mean 'top_k'?"),
    ],
)
def test_a_value_the_experiment_sets_is_reported_at_its_line(project: Path, old: str, new: str, message: str) -> None:
    from promptops.optimizer import load_context

    (project / "experiments" / "tiny.yaml").write_text(SPACE.replace(old, new))
    with pytest.raises(PromptopsError) as caught:
        load_context("tiny")
    assert str(caught.value).startswith(message), str(caught.value)


def test_the_prompts_own_values_are_blamed_on_it_under_an_experiment(project: Path) -> None:
    from promptops.optimizer import load_context

    edit(project, PROMPT, "  metric: accuracy", "  metric: bleu")
    (project / "experiments" / "tiny.yaml").write_text(SPACE)
    with pytest.raises(PromptopsError, match=r"^prompts/banking_intent.yaml:27: eval.metric: unknown metric 'bleu'"):
        load_context("tiny")


def test_model_params_are_checked_against_what_the_client_sends() -> None:
    from promptops.artifact import ModelSpec
    from promptops.errors import UnknownParameterError
    from promptops.models import check_model_params

    # A hosted model: known settings, DSPy's and the client's, and provider-specific keys LiteLLM forwards, pass.
    check_model_params(ModelSpec(id="openai/gpt-4o-mini", params={"top_p": 0.5, "seed": 3, "num_retries": 0, "timeout": 20,
                                                                  "extra_headers": {"X-Source": "ci"}, "safety_settings": []}))
    check_model_params(ModelSpec(id="local/smollm2-135m", params={"decoding": "grammar", "calibrate": True, "n_ctx": 2048, "top_k": 4}))
    with pytest.raises(UnknownParameterError, match=r"^model.params.top_pp: unknown parameter; did you mean 'top_p'\?$"):
        check_model_params(ModelSpec(id="openai/gpt-4o-mini", params={"top_pp": 0.5}))
    with pytest.raises(UnknownParameterError, match=r"^model.params.safety_settings: unknown parameter: local/smollm2-135m takes"):
        check_model_params(ModelSpec(id="local/smollm2-135m", params={"safety_settings": []}))


# --- the corpus: every one-line error through the CLI ------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[Path], list[str]]  # breaks the project; returns the command's arguments
    words: tuple[str, ...]  # in the error line


def _tiny(extra: str, *options: str, space: str = SPACE) -> Callable[[Path], list[str]]:
    def setup(root: Path) -> list[str]:
        (root / "experiments" / "tiny.yaml").write_text(space + extra)
        return ["optimize", "tiny", "--no-write", *options]

    return setup


def _rewrite(root: Path, relative: Path, pattern: "re.Pattern[str]", new: str, args: list[str] | None = None) -> list[str]:
    """The first match of `pattern` in the file replaced by `new`; returns the command's arguments (an eval by default)."""
    path = root / relative
    text, found = pattern.subn(new, path.read_text(), count=1)
    assert found, pattern
    path.write_text(text)
    return args or ["eval", NAME, "--limit", "2", "--no-track"]


def _csv(content: str) -> Callable[[Path], list[str]]:
    def setup(root: Path) -> list[str]:
        (root / "cases.csv").write_text(content)
        return ["eval", NAME, "--data", "cases.csv", "--no-track"]

    return setup


def _prompt_edit(old: str, new: str, *args: str, name: str = NAME) -> Callable[[Path], list[str]]:
    def setup(root: Path) -> list[str]:
        edit(root, Path("prompts") / f"{name}.yaml", old, new)
        return list(args) or ["eval", name, "--limit", "2", "--no-track"]

    return setup


def _dev_bytes(root: Path) -> list[str]:
    path = root / DEV
    path.write_bytes(path.read_bytes().replace(b"card", b"caf\xe9", 1))
    return ["eval", NAME, "--limit", "2", "--no-track"]


def _csv_bytes(root: Path) -> list[str]:
    (root / "cases.csv").write_bytes(b"text,intent,split\ncard?,card_arrival,dev\nna\xefve,exchange_rate,dev\n")
    return ["eval", NAME, "--data", "cases.csv", "--no-track"]


def _bad_row(root: Path) -> list[str]:
    path = root / DEV
    lines = path.read_text().splitlines()
    lines[6] = json.dumps({"text": "where is my card", "intent": "card_lost"})
    path.write_text("\n".join(lines) + "\n")
    return ["eval", NAME, "--limit", "2", "--no-track"]


def _broken_json(root: Path) -> list[str]:
    path = root / DEV
    path.write_text(path.read_text().replace("}", "", 1))
    return ["eval", NAME, "--no-track"]


def _small_train(root: Path) -> list[str]:
    rows = [{"text": f"card {i}", "intent": "card_arrival", "split": "train"} for i in range(3)]
    (root / "small.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (root / "experiments" / "tiny.yaml").write_text(SPACE.replace("search:", "data: small.jsonl\nsearch:") + "  demos: [2, 4]\n")
    return ["optimize", "tiny", "--no-write"]


def _production(*inputs: str) -> Callable[[Path], list[str]]:
    """NAME@production served from a channels file committed by hand (promotion's gate would need a model)."""

    def setup(root: Path) -> list[str]:
        import git

        repo = git.Repo(root)
        channels = root / "prompts" / "channels" / f"{NAME}.yaml"
        channels.parent.mkdir(exist_ok=True)
        channels.write_text(f"production: {{commit: {repo.head.commit.hexsha}, version: 1}}\nhistory: []\n")
        repo.git.add(str(channels))
        git_commit(repo, "Production is v1")
        return ["run", f"{NAME}@production", *[arg for value in inputs for arg in ("-i", value)]]

    return setup


def _tiny_gepa(root: Path) -> list[str]:
    (root / "experiments" / "tiny.yaml").write_text(SPACE.replace("[labeled]", "[gepa]"))
    return ["optimize", "tiny", "--no-write"]


def _no_models(root: Path) -> list[str]:
    (root / "experiments" / "tiny.yaml").write_text(SPACE.replace("[local/smollm2-135m]", "[]"))
    return ["optimize", "tiny", "--no-write"]


def _unreachable(root: Path) -> list[str]:
    edit(root, PROMPT, "  id: local/smollm2-135m", "  id: openai/gpt-4o-mini\n  api_base: http://127.0.0.1:9/v1\n  params: {num_retries: 0}")
    return ["eval", NAME, "--limit", "2", "--no-track"]


def _prompt_as(make: Callable[[Path], object]) -> Callable[[Path], list[str]]:
    """prompts/NAME.yaml replaced by what `make` puts at its path (a symlink, a folder)."""

    def setup(root: Path) -> list[str]:
        path = root / PROMPT
        (root.parent / "elsewhere.yaml").write_bytes(path.read_bytes())
        path.unlink()
        make(path)
        return ["eval", NAME, "--limit", "2", "--no-track"]

    return setup


def _prompt_copy_outside(root: Path) -> list[str]:
    (root / f"{NAME}.yaml").write_bytes((root / PROMPT).read_bytes())
    return ["show", f"{NAME}.yaml"]


def _tiny_prompt(reference: str) -> Callable[[Path], list[str]]:
    def setup(root: Path) -> list[str]:
        (root / "experiments" / "tiny.yaml").write_text(SPACE.replace(f"prompt: {NAME}", f"prompt: {reference}"))
        return ["optimize", "tiny", "--no-write"]

    return setup


def _latin1_version(*args: str) -> Callable[[Path], list[str]]:
    def setup(root: Path) -> list[str]:
        _commit_latin1_version(root)
        return list(args)

    return setup


def _index_lock(root: Path) -> list[str]:
    """A git process killed mid-way left its lock; `init` in a new folder of the repository then cannot commit."""
    (root / ".git" / "index.lock").touch()
    return ["init", "fresh"]


CASES = [
    # issue 13
    Case("data file not UTF-8 (jsonl)", _dev_bytes, ("dev.jsonl:2:", "not UTF-8 text (byte 0xe9 at column 17)", "save the file as UTF-8")),
    Case("data file not UTF-8 (csv)", _csv_bytes, ("cases.csv:3:", "byte 0xef at column 3")),
    Case("negative demos in a list", _tiny("  demos: [-4, 8]\n"), ("tiny.yaml:6:", "search.demos[0]: -4 is negative")),
    Case("negative demos in a range", _tiny("  demos: {low: -4, high: 8, step: 4}\n"), ("tiny.yaml:6:", "search.demos.low")),
    Case("more demos than train_limit", _tiny("  demos: [8]\n  train_limit: 4\n"), ("tiny.yaml:6:", "more than train_limit 4")),
    Case("more demos than train examples", _small_train, ("tiny.yaml:7:", "more than the 3 examples of small.jsonl")),
    Case("temperature out of range", _tiny("  demos: 2\n  temperature: [0.0, 2.5]\n"), ("tiny.yaml:7:", "search.temperature[1]: 2.5 is outside 0 to 2")),
    Case("negative seed", _tiny("  demos: 2\nseed: -3\n"), ("tiny.yaml:7:", "seed:")),
    Case("Authorization header", _prompt_edit("  max_tokens: 32\n", "  max_tokens: 32\n  params:\n    extra_headers:\n      Authorization: Bearer abc123def456\n"),
         ("banking_intent.yaml:27:", "model.params.extra_headers.Authorization: looks like a secret")),
    Case("model key written twice", _prompt_edit("eval:\n", "model: {id: openai/gpt-4o-mini}\neval:\n"), ("banking_intent.yaml:25:", "key 'model' repeats the one on line 21")),
    Case("experiment key written twice", _tiny("  demos: 2\n  demos: 4\n"), ("tiny.yaml:7:", "key 'demos' repeats the one on line 6")),
    Case("credentials in api_base", _prompt_edit("  max_tokens: 32\n", "  max_tokens: 32\n  api_base: https://ada:hunter2@llm.example.com/v1\n"),
         ("banking_intent.yaml:25:", "model.api_base: the URL holds a user name or password", "put credentials in the environment")),
    Case("traces of no such prompt", lambda root: ["traces", "NOSUCHPROMPT"], ("unknown prompt 'NOSUCHPROMPT'",)),
    Case("empty input", _production("text="), ("input 'text' is empty",)),
    Case("whitespace input", _production("text=   "), ("input 'text' is empty",)),
    # the one-line errors tests elsewhere know
    Case("broken YAML", _prompt_edit("  - name: text\n", "  - name: text\n   oops: [\n"), ("banking_intent.yaml:7:", "not valid YAML")),
    Case("misspelt key", _prompt_edit("instructions: |", "instruction: |"), ("banking_intent.yaml:3:", "unknown key 'instruction'")),
    Case("values without enum", _prompt_edit("    type: enum\n", "    type: string\n"), ("banking_intent.yaml:9:", "has `values` but is not of type enum")),
    Case("api_key in params", _prompt_edit("  max_tokens: 32\n", "  max_tokens: 32\n  params: {api_key: sk-123}\n"), ("model.params.api_key: looks like a secret",)),
    Case("name differs from the file", _prompt_edit("name: banking_intent", "name: banking"), ("banking_intent.yaml:1:", "must match the file name")),
    Case("bad dataset row", _bad_row, ("dev.jsonl:7:", "field 'intent'")),
    Case("broken JSON line", _broken_json, ("dev.jsonl:1:", "not valid JSON")),
    Case("no such data file", lambda root: ["eval", NAME, "--data", "nowhere.jsonl", "--no-track"], ("nowhere.jsonl", "no such dataset file")),
    Case("unknown local model", lambda root: ["eval", NAME, "--model", "local/gpt-5", "--no-track"], ("unknown local model 'local/gpt-5'",)),
    Case("model without provider", lambda root: ["eval", NAME, "--model", "gpt5", "--no-track"], ("unknown model 'gpt5'",)),
    Case("unknown prompt", lambda root: ["eval", "no_such_prompt"], ("unknown prompt 'no_such_prompt'", NAME)),
    Case("unknown metric", lambda root: ["eval", NAME, "--metric", "bleu", "--no-track"], ("unknown metric 'bleu'",)),
    Case("unreachable hosted model", _unreachable, ("all 2 examples failed",)),
    Case("unknown experiment key", _tiny("  optimiser: [none]\n"), ("tiny.yaml:6:", "unknown key 'optimiser'")),
    Case("gepa without reflection model", _tiny_gepa, ("tiny.yaml:3:", "reflection_model")),
    Case("range high below low", _tiny("  demos: {low: 8, high: 2}\n"), ("tiny.yaml:6:", "below low")),
    Case("no models", _no_models, ("tiny.yaml:4:", "at least 1")),
    Case("unknown input field", _production("txt=card?"), ("unknown input field 'txt'",)),
    Case("input not FIELD=VALUE", lambda root: ["run", NAME, "-i", "text"], ("--input 'text' is not FIELD=VALUE",)),
    Case("unknown version", lambda root: ["show", f"{NAME}@v9"], ("v9",)),
    # issue 25: paths and tracebacks
    Case("show a path out of the project", lambda root: ["show", "../../../../../../../../etc/passwd"], ("'../../../../../../../../etc/passwd'", OUTSIDE)),
    Case("show an absolute path", lambda root: ["show", "/etc/hostname"], ("'/etc/hostname'", OUTSIDE)),
    Case("run an absolute path", lambda root: ["run", "/etc/hostname", "-i", "text=hi"], ("'/etc/hostname'", OUTSIDE)),
    Case("versions of a path", lambda root: ["versions", "/etc/passwd"], ("'/etc/passwd'", OUTSIDE)),
    Case("traces of a path", lambda root: ["traces", f"../{NAME}"], (f"'../{NAME}'", OUTSIDE)),
    Case("diff with a path", lambda root: ["diff", "/etc/passwd", NAME], ("'/etc/passwd'", OUTSIDE)),
    Case("a prompt file outside prompts/", _prompt_copy_outside, (f"'{NAME}.yaml' is not in the project's prompts folder", f"as `{NAME}`")),
    Case("prompt file symlinked out of the project", _prompt_as(lambda path: path.symlink_to(path.parent.parent.parent / "elsewhere.yaml")),
         (f"prompts/{NAME}.yaml leads to", "outside the project", "copy the file into prompts/")),
    Case("prompt file a broken symlink", _prompt_as(lambda path: path.symlink_to("gone.yaml")),
         (f"prompts/{NAME}.yaml: a broken symlink (its target gone.yaml does not exist)",)),
    Case("prompt file a looping symlink", _prompt_as(lambda path: (path.symlink_to("loop.yaml"), path.with_name("loop.yaml").symlink_to(path.name))),
         (f"prompts/{NAME}.yaml: a symlink that loops back on itself",)),
    Case("prompt file a folder", _prompt_as(lambda path: path.mkdir()), (f"prompts/{NAME}.yaml: a folder, not a prompt file",)),
    Case("experiment prompt a path", _tiny_prompt("../../etc/passwd"), ("tiny.yaml:2:", "prompt: '../../etc/passwd' is not a prompt's name")),
    Case("show a version not UTF-8", _latin1_version("show", f"{NAME}@v2"), ("@", "not UTF-8 text (byte 0xe9", "this version cannot be read")),
    Case("diff a version not UTF-8", _latin1_version("diff", f"{NAME}@v1", f"{NAME}@v2"), ("not UTF-8 text (byte 0xe9",)),
    Case("similarity on an enum prompt", lambda root: ["eval", NAME, "--metric", "similarity", "--no-track"],
         ("metric 'similarity' compares free-text answers", "no string output (its outputs: intent (enum))", "use accuracy or f1")),
    Case("stale index.lock", _index_lock, ("git's index is locked (", ".git/index.lock exists)", "remove the file if no git command is running")),
    # issue 25: silent accepts and misleading messages
    Case("blank instructions", _prompt_edit(INSTRUCTIONS, "instructions: '   '\n"), ("banking_intent.yaml:3:", "instructions: the text is blank")),
    Case("enum with one label", lambda root: _rewrite(root, PROMPT, LABELS, "    values: [card_arrival]\n"),
         ("banking_intent.yaml:12:", "outputs[0].values: enum field 'intent' has one label")),
    Case("enum label twice", _prompt_edit("      - change_pin\n", "      - card_arrival\n"),
         ("banking_intent.yaml:15:", "outputs[0].values[2]: label 'card_arrival' repeats values[0]")),
    Case("threshold as a percentage", _prompt_edit("  metric: accuracy\n", "  metric: accuracy\n  threshold: 60\n"),
         ("banking_intent.yaml:28:", "eval.threshold: 60 is above 1, the best accuracy score: write 60% as 0.6")),
    Case("misspelt key in a data row", lambda root: _rewrite(root, DEV, re.compile('"intent"'), '"intnet"', ["eval", NAME, "--no-track"]),
         ("dev.jsonl:1:", "unknown key 'intnet'; did you mean 'intent'?")),
    Case("CSV column twice", _csv("text,intent,text,split\ncard?,card_arrival,x,dev\n"),
         ("cases.csv:1:", "column 'text' appears twice in the header (columns 1 and 3)")),
    Case("unclosed CSV quote", _csv('text,intent,split\ncard?,card_arrival,dev\n"my pin,change_pin,dev\nrates?,exchange_rate,dev\n'),
         ("cases.csv:3:", "a quote opens here and is never closed")),
    Case("input given twice", lambda root: ["run", NAME, "-i", "text=a", "-i", "text=b"],
         ("--input 'text' is given twice (text='a', text='b'): give it once",)),
    Case("--no-write with --write-anyway", _tiny("  demos: 2\n", "--write-anyway"), ("--no-write and --write-anyway contradict each other",)),
    Case("--workers on SQLite", _tiny("  demos: 2\n", "--workers", "3", "--n-trials", "2"),
         ("--workers 3 needs a database server as --storage", "the default storage (sqlite:///optuna.db)")),
    Case("--join on SQLite", _tiny("  demos: 2\n", "--join", "--storage", "sqlite:///shared.db"),
         ("--join needs a database server as --storage", "--storage sqlite:///shared.db")),
    Case("cost objective first", _tiny("  demos: 2\nobjectives: {cost_usd: minimize, accuracy: maximize}\n"),
         ("tiny.yaml:7:", "objectives.cost_usd: the first objective must be the quality metric")),
    Case("misspelt model param", _prompt_edit("  max_tokens: 32\n", "  max_tokens: 32\n  params: {temprature: 0.3}\n"),
         ("banking_intent.yaml:25:", "model.params.temprature: unknown parameter; did you mean 'temperature'?")),
    Case("unknown model in the prompt file", _prompt_edit("  id: local/smollm2-135m", "  id: gpt5"),
         ("banking_intent.yaml:22:", "model.id: unknown model 'gpt5'")),
    Case("unknown metric in the prompt file", _prompt_edit("  metric: accuracy", "  metric: bleu"),
         ("banking_intent.yaml:27:", "eval.metric: unknown metric 'bleu'")),
    Case("unknown data folder in the prompt file", _prompt_edit("experiments/data/banking_intent", "experiments/data/nowhere"),
         ("banking_intent.yaml:26:", "eval.data: experiments/data/nowhere: no such dataset file or folder")),
    Case("unknown prompt in an experiment", _tiny("  demos: 2\n", space=SPACE.replace("banking_intent", "banking_intnet")),
         ("tiny.yaml:2:", "prompt: unknown prompt 'banking_intnet'")),
    Case("unknown data in an experiment", _tiny("  demos: 2\n", space=SPACE.replace("search:", "data: nowhere.jsonl\nsearch:")),
         ("tiny.yaml:3:", "data: nowhere.jsonl: no such dataset file or folder")),
    Case("unknown model in an experiment", _tiny("  demos: 2\n", space=SPACE.replace("[local/smollm2-135m]", "[gpt5]")),
         ("tiny.yaml:4:", "search.models[0].id: unknown model 'gpt5'")),
    Case("--model names its flag", lambda root: ["eval", NAME, "--model", "gpt5", "--no-track"], ("Error: --model: unknown model 'gpt5'",)),
    Case("--metric names its flag", lambda root: ["eval", NAME, "--metric", "bleu", "--no-track"], ("Error: --metric: unknown metric 'bleu'",)),
    Case("--data names its flag", lambda root: ["eval", NAME, "--data", "nowhere.jsonl", "--no-track"],
         ("Error: --data: nowhere.jsonl: no such dataset file or folder",)),
    Case("unknown model in the working file served", _prompt_edit("  id: local/smollm2-135m", "  id: gpt5", "run", NAME, "-i", "text=hi",
                                                                  "--no-trace"), ("banking_intent.yaml:22:", "model.id: unknown model 'gpt5'")),
    Case("misspelt model param served", _prompt_edit("  max_tokens: 32\n", "  max_tokens: 32\n  params: {temprature: 0.3}\n", "run", NAME,
                                                     "-i", "text=hi", "--no-trace"),
         ("Error: prompts/banking_intent.yaml:25: model.params.temprature: unknown parameter; did you mean 'temperature'?",)),
]


def _state(repo) -> dict:
    """What a refused command must leave as it was: every file of the project, HEAD, git status, the registry's aliases."""
    from promptops import tracking

    root = Path(repo.working_tree_dir)
    files = {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
             for path in sorted(root.rglob("*")) if path.is_file() and ".git" not in path.relative_to(root).parts}
    # A store that does not exist holds no alias: reading it would create it (and run MLflow's migrations) for nothing.
    store = Path(tracking.tracking_uri(root).removeprefix("sqlite:///"))
    aliases = {name: tracking.registry_aliases(name, root) if store.exists() else {} for name in (NAME, "restaurant_booking")}
    return {"files": files, "head": repo.head.commit.hexsha, "status": repo.git.status("--porcelain", "--untracked-files=all"),
            "aliases": aliases}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_every_bad_input_is_one_line_and_changes_nothing(
        case: Case, git_project, mlflow_store: str, monkeypatch, assert_one_line_error) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-corpus-test-key-0123456789")
    root = Path(git_project.working_tree_dir)
    args = case.setup(root)
    before = _state(git_project)
    line = assert_one_line_error(CliRunner().invoke(main, args))
    for words in case.words:
        assert words in line, line
    assert "sk-corpus-test-key" not in line
    assert _state(git_project) == before


assert len(CASES) >= 25, len(CASES)  # the corpus: issue 13's cases and the one-line errors found in the other tests


def test_the_corpus_covers_issue_13_and_the_known_one_line_errors() -> None:
    print(f"\nbad-input corpus: {len(CASES)} cases, each one line on stderr, no traceback, nothing changed")
    assert len({case.name for case in CASES}) == len(CASES) >= 25
