"""Helpers to run the fake upstream and `slimgate serve` as real processes on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gateway.offline.local import gateway_toml

ROOT = Path(__file__).resolve().parent.parent
# How long a served gateway may take to become ready: a bound that keeps a broken start from
# hanging the suite, not a measure (three replicas starting at once on a loaded 2-core
# machine took over 60 s; quiet, one starts in 2-3 s).
START_TIMEOUT_S = 300.0


def start_upstream_process() -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_upstream"], cwd=ROOT,
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/v1"


def write_config(tmp: Path, upstream: str, port: int, extra_store: str = "",
                 extra: str = "[worker]\nembedded = false\n") -> Path:
    cfg = tmp / "config.toml"
    toml = gateway_toml(port=port, store=tmp / "store.db", keys_env="SERVED_TEST_KEYS",
                        model="m", base_url=upstream,
                        model_extra='api_key_env = "SERVED_TEST_PROVIDER_KEY"\nmax_retries = 0',
                        more=extra)
    # extra [store] keys go into the [store] table, right after its path
    cfg.write_text(toml.replace(f'path = "{tmp / "store.db"}"\n',
                                f'path = "{tmp / "store.db"}"\n{extra_store}\n', 1))
    return cfg


def spawn_gateway(cfg: Path, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`slimgate serve --config cfg`, its output in `log`; not waited for (see `wait_ready`)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg)],
            cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
        )


def start_gateway(cfg: Path, port: int, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`spawn_gateway`, then `wait_ready`."""
    proc = spawn_gateway(cfg, log, env)
    wait_ready(proc, port, log)
    return proc


def wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Until the gateway on `port` answers /readyz; killed, with its log raised, if it exits
    or START_TIMEOUT_S passes."""
    deadline = time.time() + START_TIMEOUT_S
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("gateway did not become ready:\n" + log.read_text())


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
