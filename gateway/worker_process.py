"""The distill worker as a subprocess of `slimgate serve` (the embedded default).

Training runs in its own process so it never slows the gateway's event loop; the two share
only the store. The worker is started when the gateway starts from a config file with
`worker.embedded = true` and the `distill` extra installed, and stopped with the gateway.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys

from gateway.config import Config, VLLMEngineConfig

log = logging.getLogger("slimgate.worker")


# What the worker needs from the environment: where things are, locale, temp dirs, and the
# knobs of the libraries it trains with. It calls a provider only to judge held-out free text
# (`policy.text_judge = "teacher"`), and then gets that judge's key only. Other secrets: two
# (docs/reliability.md #14): HF_TOKEN, because candidate models it downloads may be gated on
# the hub (unless the config names HF_TOKEN for a key), and the store's `password_env`,
# because it writes to the store.
_PASSED = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR", "TEMP", "TMP",
                     "PYTHONPATH", "PYTHONHASHSEED", "VIRTUAL_ENV", "SLIMGATE_CONFIG",
                     "HF_TOKEN"})  # HF_TOKEN: candidate models may be gated on the hub
_PASSED_PREFIXES = ("LC_", "HF_", "TRANSFORMERS_", "TORCH", "OMP_", "MKL_", "CUDA_", "NVIDIA_",
                    "PYTORCH_", "TOKENIZERS_", "XDG_", "LITELLM_LOCAL_MODEL_COST_MAP")
_SECRETISH = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")


def judge_key_envs(config: Config) -> set[str]:
    """The provider keys the worker's held-out judge calls need: none unless a policy says
    `text_judge = "teacher"`; then `text_judge_model`'s key, or (unset: the teacher judges,
    whichever model a task's clients name) every configured model's."""
    policy = config.policy
    if policy.text_judge != "teacher" and all(t.text_judge != "teacher" for t in policy.tasks):
        return set()
    judge = config.model(policy.text_judge_model) if policy.text_judge_model else None
    models = [judge] if judge is not None else config.models
    return {m.api_key_env for m in models if m.api_key_env}


def worker_env(config: Config, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: only what `_PASSED` names, never a variable the config names
    for a key (gateway, admin, metrics, vLLM; provider keys only for the judge, where a policy
    asks the teacher to judge held-out free text) nor one that looks like a secret."""
    environ = dict(os.environ if environ is None else environ)
    engine = config.students.engine
    vllm_key = engine.api_key_env if isinstance(engine, VLLMEngineConfig) else None
    named = {config.server.api_keys_env, config.server.admin_keys_env,
             config.server.metrics_keys_env, vllm_key, *(m.api_key_env for m in config.models)}
    # never a gateway, admin, metrics or vLLM key, even when a model names the same variable
    judge_keys = judge_key_envs(config) - {
        config.server.api_keys_env, config.server.admin_keys_env, config.server.metrics_keys_env,
        vllm_key}
    out = {}
    for name, value in environ.items():
        if name in judge_keys:
            out[name] = value
            continue
        if name in named:
            continue
        store_password = name == config.store.password_env  # the worker uses the store too
        if store_password or name in _PASSED or (
                name.startswith(_PASSED_PREFIXES)
                and not any(s in name.upper() for s in _SECRETISH)):
            out[name] = value
    return out


def start_worker(config_path: str | None, config: Config) -> subprocess.Popen[bytes] | None:
    if not config.worker.embedded or not config_path:
        return None
    if importlib.util.find_spec("torch") is None:
        log.warning("worker not started: the distill extra is not installed "
                    "(pip install 'slimgate[distill]'), so the gateway only records")
        return None
    # --parent-pid: the worker exits by itself if the gateway dies, even by kill -9.
    cmd = [sys.executable, "-m", "gateway.cli", "worker", "--config", config_path,
           "--parent-pid", str(os.getpid())]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=worker_env(config))
    log.info("distill worker started (pid %d)", proc.pid)
    return proc


def stop_worker(proc: subprocess.Popen[bytes] | None, timeout_s: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()  # the worker finishes its current write and exits; training is abandoned
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
