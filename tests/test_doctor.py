"""The llama.cpp build and `promptops doctor`: a portable build that answers, and a crash named in one line.

The crash is real, not mocked in-process: a stand-in `llama_cpp` package on the child's
PYTHONPATH dies of a signal the way a bad build does (a NULL read for SIGSEGV).
"""

from __future__ import annotations

import json
import platform
import textwrap
from pathlib import Path

import pytest

from promptops.models import LOCAL_MODELS


@pytest.mark.model
def test_the_installed_llama_cpp_has_no_amx_backend_and_answers() -> None:
    import llama_cpp

    from promptops.models._llama_engine import _grammar_for, load_llama

    info = llama_cpp.llama_print_system_info().decode()
    assert "AMX_INT8 = 1" not in info, f"llama.cpp was built with its AMX backend (llama.cpp#20824): {info}"
    if platform.machine() in ("x86_64", "AMD64"):
        assert "AVX2 = 1" in info, info  # the portable build still uses AVX2 and FMA
    loaded = load_llama(LOCAL_MODELS["local/smollm2-135m"].locate())
    grammar = _grammar_for(json.dumps({"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"]}))
    completion = loaded.run(lambda: loaded.llama.create_chat_completion(
        messages=[{"role": "user", "content": "Is water wet? Answer yes or no."}], grammar=grammar, max_tokens=16))
    assert json.loads(completion["choices"][0]["message"]["content"])["answer"] in {"yes", "no"}


@pytest.mark.model
def test_doctor_prints_one_line_per_model_and_exits_0_when_all_answer(run) -> None:
    result = run("doctor")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == len(LOCAL_MODELS), result.output
    smollm2 = next(line for line in lines if "local/smollm2-135m" in line)
    assert smollm2.startswith("OK local/smollm2-135m: ") and " s per call " in smollm2, smollm2
    assert "AMX" not in smollm2
    for model_id in LOCAL_MODELS:
        assert sum(model_id in line for line in lines) == 1, result.output


@pytest.mark.model
def test_doctor_json_reports_time_and_cpu_features(run) -> None:
    result = run("doctor", "local/smollm2-135m", "--json")
    assert result.exit_code == 0, result.output
    [health] = json.loads(result.output)
    assert health["status"] == "ok" and health["problem"] is None
    assert 0 < health["seconds_per_call"] < 60 and health["output_tokens"] >= 1
    if platform.machine() in ("x86_64", "AMD64"):
        assert "AVX2" in health["cpu_features"] and not health["amx"]


FAKE_LLAMA_CPP = """
import ctypes, os, signal, time

__version__ = "0.0-fake"

def llama_print_system_info():
    return b"CPU : SSE3 = 1 | AVX2 = 1 | FMA = 1 | AMX_INT8 = 1 | OPENMP = 1 | "

def llama_log_callback(function):
    return function

def llama_log_set(callback, user_data):
    pass

class LlamaGrammar:
    @classmethod
    def from_json_schema(cls, schema, verbose=False):
        return cls()

class Llama:
    def __init__(self, **options):
        if {hang_on_load}:
            time.sleep(60)

    def create_chat_completion(self, **options):
        {die}

    def close(self):
        pass
"""


def fake_llama_cpp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, die: str, hang_on_load: bool = False) -> None:
    package = tmp_path / "fake" / "llama_cpp"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(FAKE_LLAMA_CPP).format(die=die, hang_on_load=hang_on_load))
    monkeypatch.setenv("PYTHONPATH", str(package.parent))


def assert_one_failed_line(result, *words: str) -> str:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    [line] = result.output.strip().splitlines()
    assert line.startswith("FAILED local/smollm2-135m "), line
    assert "Traceback" not in result.output and "Fatal Python error" not in result.output
    for word in words:
        assert word in line, line
    return line


def test_a_segfault_in_the_child_is_one_line_naming_the_signal_the_amx_backend_and_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run) -> None:
    fake_llama_cpp(tmp_path, monkeypatch, die="ctypes.string_at(0)")
    line = assert_one_failed_line(run("doctor", "local/smollm2-135m"),
                                  "SIGSEGV", "on its first call", "AMX", "llama.cpp#20824", "-DGGML_NATIVE=OFF")
    assert line.endswith(".")


def test_an_illegal_instruction_names_a_wheel_built_for_another_cpu(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run) -> None:
    fake_llama_cpp(tmp_path, monkeypatch, die="os.kill(os.getpid(), signal.SIGILL)")
    assert_one_failed_line(run("doctor", "local/smollm2-135m"), "SIGILL", "illegal instruction", "pip's cache", "--no-cache-dir")


def test_a_model_that_hangs_is_cut_at_the_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run) -> None:
    fake_llama_cpp(tmp_path, monkeypatch, die="pass", hang_on_load=True)
    assert_one_failed_line(run("doctor", "local/smollm2-135m", "--timeout", "3"), "within 3 s", "while loading its weights")


def test_an_unknown_model_is_refused_before_any_process_starts(run) -> None:
    result = run("doctor", "local/nope")
    assert result.exit_code == 1 and "unknown local model 'local/nope'" in result.stderr
