"""Drives a built slimgate image for real: chat through it, restart it, find the store intact.

Run by tests/container/run.sh with the host's venv (the `openai` SDK, tests.fake_upstream as
the loopback teacher). Containers use the host's network (this engine runs without a bridge),
so every server binds 127.0.0.1 on a free port. Exits non-zero, saying why, on misbehaviour.
Usage: python tests/container/check.py single IMAGE | compose IMAGE POSTGRES_IMAGE
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from openai import AuthenticationError, OpenAI
from openai.types.chat import ChatCompletionMessageParam

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.fake_upstream import FakeUpstream  # noqa: E402

KEY = "sk-container-test"  # the gateway key clients send (SLIMGATE_API_KEYS in the container)
CONFIG_IN = "/etc/slimgate/config.toml"
# Generous: under the vfs storage driver on 2 shared cores, the first start (imports of
# litellm and torch from a cold page cache) took ~25 s here.
START_S = 180.0


class Failed(Exception):
    pass


def sh(*args: str, check: bool = True, timeout: float = 300) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise Failed(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, ok: Callable[[], bool], timeout: float, logs: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ok():
                return
        except Exception:  # not up yet: connection refused, 5xx, a container restarting
            pass
        time.sleep(1.0)
    tail = sh("docker", "logs", "--tail", "60", logs, check=False) if logs else ""
    raise Failed(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")


def healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
        return bool(r.status == 200)


def config_text(teacher: FakeUpstream, port: int, store: str = "") -> str:
    """The gateway's config: one model on the loopback teacher; the worker stays idle."""
    return f"""
[server]
host = "127.0.0.1"
port = {port}
{store}
[[models]]
name = "teacher"
provider = "openai"
base_url = "{teacher.base_url}"
api_key_env = "TEACHER_API_KEY"
max_retries = 0

[worker]
interval_s = 3600.0
"""


def chat(port: int, tag: str, n: int) -> None:
    """n requests through the gateway with the openai SDK, every second one streamed."""
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0,
                    timeout=60)
    for i in range(n):
        text = f"{tag} request {i}"
        msgs: list[ChatCompletionMessageParam] = [{"role": "user", "content": text}]
        if i % 2:
            stream = client.chat.completions.create(model="teacher", messages=msgs, stream=True)
            got = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        else:
            r = client.chat.completions.create(model="teacher", messages=msgs)
            got = r.choices[0].message.content or ""
        if got != f"echo: {text}":
            raise Failed(f"port {port}: {text!r} was answered {got!r}")
    bad = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-wrong", max_retries=0)
    try:
        bad.chat.completions.create(model="teacher", messages=[{"role": "user", "content": "x"}])
    except AuthenticationError:
        pass
    else:
        raise Failed(f"port {port}: a wrong key was served")


def recorded(container: str) -> list[str]:
    """The exchanges in the store, as `slimgate traces export` inside the container sees it."""
    out = "/tmp/traces.jsonl"  # noqa: S108 - inside the container
    sh("docker", "exec", container, "slimgate", "traces", "export", "--config", CONFIG_IN,
       "--out", out)
    lines = sh("docker", "exec", container, "cat", out).splitlines()
    return [json.loads(line)["request"]["messages"][-1]["content"] for line in lines]


def wait_recorded(container: str, want: set[str]) -> None:
    wait_for(f"{len(want)} exchanges in the store", lambda: set(recorded(container)) == want,
             60, container)


def run_gateway(image: str, name: str, volume: str, config: Path, port: int) -> None:
    sh("docker", "run", "-d", "--name", name, "--network", "host",
       "-v", f"{volume}:/data", "-v", f"{config}:{CONFIG_IN}:ro",
       "-e", f"SLIMGATE_API_KEYS={KEY}", "-e", "TEACHER_API_KEY=sk-teacher",
       "-e", f"SLIMGATE_HEALTH_URL=http://127.0.0.1:{port}/healthz",
       "--health-interval", "2s", "--health-start-period", f"{START_S:.0f}s",
       # The image's CMD with loopback for 0.0.0.0: on the host's network, bind no further.
       image, "slimgate", "serve", "--config", CONFIG_IN, "--host", "127.0.0.1")
    wait_for(f"{name} to answer /readyz", lambda: healthy(port), START_S, name)


def single(image: str) -> None:
    """One container on a named volume, its HEALTHCHECK, user, restart and replacement."""
    stamp = f"{os.getpid()}"
    name, volume = f"slimgate-ct-{stamp}", f"slimgate-ct-data-{stamp}"
    teacher = FakeUpstream().start()
    tmp = Path(tempfile.mkdtemp(prefix="slimgate-ct-"))
    try:
        port = free_port()
        config = tmp / "config.toml"
        config.write_text(config_text(teacher, port))
        config.chmod(0o644)
        tmp.chmod(0o755)
        sh("docker", "volume", "create", volume)
        run_gateway(image, name, volume, config, port)
        wait_for("the HEALTHCHECK to report healthy", lambda: sh(
            "docker", "inspect", "-f", "{{.State.Health.Status}}", name).strip() == "healthy",
            60, name)
        user = sh("docker", "exec", name, "id", "-u").strip()
        if user != "10001":
            raise Failed(f"the gateway runs as uid {user}, not 10001")

        chat(port, "first", 6)
        first = {f"first request {i}" for i in range(6)}
        wait_recorded(name, first)
        print(f"single: 6 chats through the container, 6 exchanges recorded (port {port})")

        sh("docker", "restart", "-t", "40", name)
        wait_for("the restarted gateway", lambda: healthy(port), START_S, name)
        wait_recorded(name, first)
        print("single: after `docker restart` the store still holds the 6 exchanges")

        # A new container on the same volume: the store lives on the volume, not in the layer.
        sh("docker", "stop", "-t", "40", name)
        sh("docker", "rm", name)
        run_gateway(image, name, volume, config, port)
        chat(port, "second", 2)
        wait_recorded(name, first | {"second request 0", "second request 1"})
        owner = sh("docker", "exec", name, "stat", "-c", "%u", "/data/slimgate.db").strip()
        if owner != "10001":
            raise Failed(f"/data/slimgate.db is owned by uid {owner}")
        print("single: a new container on the same volume found all 6 and recorded 2 more")
    finally:
        sh("docker", "rm", "-f", name, check=False)
        sh("docker", "volume", "rm", "-f", volume, check=False)
        teacher.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    mode, image = sys.argv[1], sys.argv[2]
    try:
        if mode == "single":
            single(image)
        else:
            from tests.container.compose_check import compose  # noqa: PLC0415
            compose(image, sys.argv[3])
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
