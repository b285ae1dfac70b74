"""Running slimgate and its stand-ins as local processes: ports, readiness, a base config.

Shared by `slimgate demo`, the benchmarks and the real-socket tests, which all start
`slimgate serve` (and a teacher) on loopback and wait for them.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Poll `url` until it answers 200, or raise if `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the process serving {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready within {timeout_s:g}s")


def gateway_toml(*, port: int, store: Path | str, keys_env: str, model: str, base_url: str,
                 model_extra: str = "", more: str = "", store_extra: str = "") -> str:
    """A `slimgate serve` config on 127.0.0.1 with one OpenAI-compatible model; `store` is a
    SQLite path or a postgresql:// URL; `model_extra` and `store_extra` add keys to those
    tables, `more` whole tables after them."""
    where = "url" if str(store).startswith("postgresql://") else "path"
    return f"""
[server]
host = "127.0.0.1"
port = {port}
api_keys_env = "{keys_env}"
log_level = "warning"

[store]
{where} = "{store}"
{store_extra}

[[models]]
name = "{model}"
provider = "openai"
base_url = "{base_url}"
{model_extra}

{more}
"""
