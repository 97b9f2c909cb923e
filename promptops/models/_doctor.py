"""`promptops doctor`: does each installed embedded model load and answer on this machine?

Each model runs in a child process (`_doctor_child`), one after the other: a llama.cpp build
that crashes on this CPU (the AMX backend of a natively compiled build segfaults on its first
call, llama.cpp#20824; a wheel compiled for another CPU dies of an illegal instruction) kills
the child, never the caller, and the report names the signal and the fix.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Optional

# How to get a portable build, for the sentences below; the README's "The embedded model's
# build" says why.
REBUILD = ("reinstall llama-cpp-python built with CMAKE_ARGS=\"-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON "
           "-DGGML_F16C=ON\" and pip's --no-cache-dir (in a promptops clone: make clean && make install)")

# Keys of llama.cpp's system info that are build options, not instruction sets.
_NOT_CPU_FEATURES = {"LLAMAFILE", "OPENMP", "REPACK", "ACCELERATE", "KLEIDIAI", "MATMUL_INT8", "DOTPROD"}


@dataclass(frozen=True)
class ModelHealth:
    """What one embedded model did in its child process."""

    model_id: str
    status: str  # "ok", "failed" or "not installed"
    problem: Optional[str] = None  # one sentence when not ok
    seconds_per_call: Optional[float] = None
    load_s: Optional[float] = None
    output_tokens: Optional[int] = None
    cpu_features: tuple[str, ...] = field(default_factory=tuple)
    llama_cpp_version: Optional[str] = None
    amx: bool = False  # llama.cpp was built with its AMX backend (llama.cpp#20824)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def summary(self) -> dict:
        return {
            "model": self.model_id, "status": self.status, "problem": self.problem,
            "seconds_per_call": self.seconds_per_call, "load_s": self.load_s, "output_tokens": self.output_tokens,
            "cpu_features": list(self.cpu_features), "llama_cpp_version": self.llama_cpp_version, "amx": self.amx,
        }


def cpu_features(system_info: str) -> tuple[str, ...]:
    """The instruction sets a llama.cpp build uses, from `llama_print_system_info()`.

    Only the CPU backend's part counts: 'CPU : SSE3 = 1 | AVX2 = 1 | ... |' (other backends
    follow after their own 'NAME :' heading).
    """
    part = system_info.split("CPU :", 1)[-1]
    part = re.split(r"\|\s*[A-Za-z][\w ]*:", part, maxsplit=1)[0]
    return tuple(name for name, on in re.findall(r"([A-Z][A-Z0-9_]*)\s*=\s*(\d+)", part)
                 if on != "0" and name not in _NOT_CPU_FEATURES)


def diagnose(models: Optional[list[str]] = None, *, timeout_s: float = 180.0) -> list[ModelHealth]:
    """Check each embedded model (all of the catalog by default) in a child process, one at a time.

    One at a time on purpose: two processes running llama.cpp on a small machine slow each other
    down many times over.
    """
    from promptops.models._catalog import LOCAL_MODELS, local_model

    for model_id in models or []:
        local_model(model_id)  # an unknown name is the caller's mistake, before any process starts
    return [check_model(model_id, timeout_s=timeout_s) for model_id in (models or list(LOCAL_MODELS))]


def check_model(model_id: str, *, timeout_s: float = 180.0) -> ModelHealth:
    command = [sys.executable, "-m", "promptops.models._doctor_child", model_id]
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                                  stdin=subprocess.DEVNULL, env=_child_environment())
    except subprocess.TimeoutExpired as exc:
        events = _events(exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or "")
        return _health(model_id, events, "failed",
                       f"{model_id} did not answer within {timeout_s:g} s {_stage(events)} (another process running a model at the "
                       f"same time slows both many times over; PROMPTOPS_LLAMA_THREADS=1 helps)")
    events = _events(finished.stdout)
    code = finished.returncode
    if code == 0 and "answered" in events:
        return _health(model_id, events, "ok", None)
    if "error" in events:
        error = events["error"]
        status = "not installed" if error.get("kind") == "unavailable" else "failed"
        message = str(error.get("message"))
        return _health(model_id, events, status, message if message.startswith(model_id) else f"{model_id}: {message}")
    if code < 0:
        return _health(model_id, events, "failed", _crash_sentence(model_id, -code, events))
    last_line = (finished.stderr.strip().splitlines() or ["no output"])[-1]
    return _health(model_id, events, "failed", f"{model_id} exited with status {code} {_stage(events)}: {last_line}")


def _child_environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment.pop("PYTHONFAULTHANDLER", None)  # the parent names the crash in one sentence
    return environment


def _events(stdout: str) -> dict[str, dict]:
    events: dict[str, dict] = {}
    for line in stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "event" in event:
            events[event["event"]] = event
    return events


def _stage(events: dict[str, dict]) -> str:
    if "loaded" in events:
        return "on its first call"
    if "system" in events:
        return "while loading its weights"
    return "while starting"


def _crash_sentence(model_id: str, signal_number: int, events: dict[str, dict]) -> str:
    try:
        name = signal.Signals(signal_number).name
    except ValueError:
        name = f"signal {signal_number}"
    described = {"SIGSEGV": "segmentation fault", "SIGILL": "illegal instruction", "SIGBUS": "bus error",
                 "SIGABRT": "abort", "SIGKILL": "killed, perhaps for lack of memory"}.get(name, "")
    crash = f"{model_id} crashed with {name}{f' ({described})' if described else ''} {_stage(events)}"
    info = events.get("system", {}).get("system_info", "")
    if name == "SIGILL":
        return (f"{crash}: llama-cpp-python was compiled for instructions this CPU lacks (a wheel built with "
                f"-march=native on another machine, perhaps from pip's cache); {REBUILD}.")
    if "AMX_INT8 = 1" in info:
        return f"{crash}, with llama.cpp's AMX backend on (llama.cpp#20824, a native build on an AMX CPU); {REBUILD}."
    if name == "SIGKILL":
        return f"{crash}."
    return f"{crash}; {REBUILD}, and if it persists run `python -X faulthandler -m promptops.models._doctor_child {model_id}` to see where."


def _health(model_id: str, events: dict[str, dict], status: str, problem: Optional[str]) -> ModelHealth:
    system = events.get("system", {})
    info = system.get("system_info", "")
    answered = events.get("answered", {})
    return ModelHealth(
        model_id=model_id, status=status, problem=problem,
        seconds_per_call=answered.get("seconds"), load_s=events.get("loaded", {}).get("load_s"),
        output_tokens=answered.get("output_tokens"), cpu_features=cpu_features(info) if info else (),
        llama_cpp_version=system.get("llama_cpp_version"), amx="AMX_INT8 = 1" in info,
    )
