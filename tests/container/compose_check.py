"""docker-compose.scale.yml for real: PostgreSQL, two gateway replicas and a worker.

The user's compose file is rewritten for this machine only (no registry, no bridge): every
service on the host's network, binding 127.0.0.1 on free ports, PostgreSQL from the local
stand-in image, slimgate from the image just built. Services, commands, volumes, env and
the dependency on PostgreSQL's health stay the user's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from tests.container.check import (
    CONFIG_IN,
    KEY,
    START_S,
    Failed,
    chat,
    config_text,
    free_port,
    healthy,
    recorded,
    sh,
    wait_for,
)
from tests.fake_upstream import FakeUpstream

ROOT = Path(__file__).resolve().parents[2]
REPLICAS = ("slimgate-1", "slimgate-2")
PASSWORD = "container-test-pw"  # noqa: S105 - a throwaway database on loopback


def compose_client() -> list[str]:
    if sh("docker", "compose", "version", check=False):
        return ["docker", "compose"]
    return ["docker-compose"]


def container(project: str, service: str) -> str:
    """A service's container id (compose v1 and v2 name containers differently)."""
    out = sh("docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}",
             "--filter", f"label=com.docker.compose.service={service}").split()
    if len(out) != 1:
        raise Failed(f"expected one container of {service}, found {out}")
    return out[0]


def local_compose(image: str, pg_image: str, tmp: Path, ports: dict[str, int]) -> Path:
    """The user's docker-compose.scale.yml, moved onto this machine's network and images."""
    spec: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.scale.yml").read_text())
    for name, svc in spec["services"].items():
        svc.pop("ports", None)
        svc.pop("build", None)
        svc["network_mode"] = "host"
        svc.pop("restart", None)  # a failure here should show, not loop
        if name == "postgres":
            svc["image"] = pg_image
            svc["environment"] = {**svc["environment"], "PGPORT": str(ports["postgres"]),
                                  "POSTGRES_LISTEN": "127.0.0.1"}
            continue
        svc["image"] = image
        svc["env_file"] = str(tmp / ".env")
        svc["volumes"] = [v.replace("./config.scale.toml", str(tmp / "config.toml"))
                          for v in svc["volumes"]]
        if name in ports:  # a replica: loopback and its own port on the shared network
            cmd = list(svc["command"])
            cmd[cmd.index("--host") + 1] = "127.0.0.1"
            svc["command"] = [*cmd, "--port", str(ports[name])]
            svc["environment"] = {
                "SLIMGATE_HEALTH_URL": f"http://127.0.0.1:{ports[name]}/healthz"}
            svc["healthcheck"] = {**svc["healthcheck"], "test": [
                "CMD", "python", "-c", "import urllib.request; urllib.request.urlopen("
                f"'http://127.0.0.1:{ports[name]}/readyz', timeout=4)"], "interval": "3s"}
    path = tmp / "docker-compose.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def worker_logs(container_id: str) -> str:
    logs = subprocess.run(["docker", "logs", container_id], capture_output=True, text=True,
                          timeout=60)
    return logs.stdout + logs.stderr


def worker_leads(container_id: str) -> bool:
    return ") leads" in worker_logs(container_id)


def sees(container_id: str, want: set[str]) -> bool:
    return set(recorded(container_id)) == want


def compose(image: str, pg_image: str) -> None:
    project = f"slimgate-ct-{os.getpid()}"
    teacher = FakeUpstream().start()
    tmp = Path(tempfile.mkdtemp(prefix="slimgate-ct-compose-"))
    tmp.chmod(0o755)
    ports = {"postgres": free_port(), **{r: free_port() for r in REPLICAS}}
    store = (f'[store]\nurl = "postgresql://slimgate@127.0.0.1:{ports["postgres"]}/slimgate"\n'
             'password_env = "SLIMGATE_PG_PASSWORD"\n')
    config = config_text(teacher, 8080, store).replace("[worker]\n", "[worker]\nembedded = false\n")
    (tmp / "config.toml").write_text(config + '\n[distill]\nstudents_dir = "/data/students"\n')
    (tmp / "config.toml").chmod(0o644)
    (tmp / ".env").write_text(f"SLIMGATE_API_KEYS={KEY}\nTEACHER_API_KEY=sk-teacher\n"
                              f"SLIMGATE_PG_PASSWORD={PASSWORD}\n")
    base = [*compose_client(), "-p", project, "-f", str(local_compose(image, pg_image, tmp,
                                                                       ports))]
    # ${SLIMGATE_PG_PASSWORD:?...} in the file is read from the environment of compose itself
    os.environ["SLIMGATE_PG_PASSWORD"] = PASSWORD
    try:
        sh(*base, "up", "-d", timeout=600)
        for r in REPLICAS:
            wait_for(f"{r} to answer /readyz", partial(healthy, ports[r]), START_S,
                     container(project, r))
        for r in REPLICAS:
            chat(ports[r], r, 4)
        want = {f"{r} request {i}" for r in REPLICAS for i in range(4)}
        print(f"compose: 4 chats through each of {', '.join(REPLICAS)} "
              f"(ports {ports['slimgate-1']}, {ports['slimgate-2']})")
        # Each replica reads the one store: it finds what the other recorded.
        for r in REPLICAS:
            c = container(project, r)
            wait_for(f"{r} to see both replicas' exchanges", partial(sees, c, want), 60, c)
        print(f"compose: each replica's `slimgate traces export` finds all {len(want)} "
              "exchanges in the one PostgreSQL store")
        worker = container(project, "worker")
        # The worker holds the store's leader lock (a PostgreSQL advisory lock) and says so.
        wait_for("the worker to lead", partial(worker_leads, worker), 60, worker)
        state = sh("docker", "inspect", "-f", "{{.State.Status}}", worker).strip()
        if state != "running" or "Traceback" in worker_logs(worker):
            raise Failed(f"the worker is {state}:\n{worker_logs(worker)[-3000:]}")
        print("compose: the worker runs beside them and leads")
    finally:
        sh(*base, "down", "-v", "-t", "40", check=False, timeout=300)
        teacher.stop()
        del os.environ["SLIMGATE_PG_PASSWORD"]
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["CONFIG_IN", "compose"]
