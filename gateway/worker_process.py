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

from gateway.config import Config

log = logging.getLogger("slimgate.worker")


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
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
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
