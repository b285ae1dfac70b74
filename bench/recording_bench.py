"""Recording into the store: bytes per exchange on public agent traffic, with and without
static-text deduplication, and recording throughput into PostgreSQL across replicas.

The requests are real agents' first and second turns: τ²-bench's and AgentDojo's system
prompts, tool sets and user requests (bench/agent_data.py, from the inspect-evals wheel).
Part 1 records them through the `Recorder` into SQLite and PostgreSQL and prints the bytes
stored per exchange. Part 2 starts three `slimgate serve --no-worker` replicas on one
PostgreSQL database and a loopback teacher, drives them at concurrency 64 with those
requests, and prints requests/s served and rows/s landed in the store.

    python bench/recording_bench.py [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import psycopg  # noqa: E402

from bench.agent_data import DataMissing, load_all  # noqa: E402
from gateway.config import StoreConfig  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from gateway.offline.local import free_port, gateway_toml, wait_ready  # noqa: E402
from gateway.store.base import open_store  # noqa: E402
from gateway.store.db import connect  # noqa: E402
from gateway.store.recorder import Exchange, Recorder  # noqa: E402

ANSWER = {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
    "role": "assistant", "content": None, "tool_calls": [{
        "id": "call_1", "type": "function",
        "function": {"name": "get_user_details", "arguments": '{"user_id": "mia_li_3668"}'}}]}}],
    "usage": {"prompt_tokens": 1800, "completion_tokens": 20, "total_tokens": 1820}}


def agent_requests() -> list[dict[str, Any]]:
    """First turns (system + user) and second turns (after one tool call) of every case."""
    _, tau2, dojo = load_all()
    out = []
    for domain in [*tau2, *dojo]:
        tools = [t.spec() for t in domain.tools]
        for case in domain.cases:
            first = [{"role": "system", "content": domain.system},
                     {"role": "user", "content": case.text}]
            out.append({"model": "bench", "messages": first, "tools": tools})
            if case.calls:
                name, arguments = case.calls[0]
                call = {"id": "call_1", "type": "function", "function": {
                    "name": name, "arguments": str(arguments).replace("'", '"')}}
                out.append({"model": "bench", "tools": tools, "messages": [
                    *first, {"role": "assistant", "content": None, "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "ok: done"}]})
    return out


def stored_bytes(target: str) -> tuple[int, int]:
    """(bytes of request, reference and response columns plus texts; rows)."""
    con = connect(target)
    n, body = con.execute(
        "SELECT COUNT(*), COALESCE(SUM(LENGTH(request) + LENGTH(COALESCE(request_texts, '')) "
        "+ LENGTH(response)), 0) FROM exchanges").fetchone()
    texts = con.execute("SELECT COALESCE(SUM(LENGTH(body) + 64), 0) FROM texts").fetchone()[0]
    con.close()
    return int(body + texts), int(n)


def disk_bytes(target: str) -> int:
    if target.startswith("postgresql://"):
        con = connect(target)
        size = con.execute(
            "SELECT SUM(pg_total_relation_size(c.oid)) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
            "AND c.relkind = 'r' AND (c.relname LIKE 'exchanges%' OR c.relname = 'texts')"
        ).fetchone()[0]
        con.close()
        return int(size)
    con = connect(target)
    con.execute("VACUUM")
    con.close()
    return os.path.getsize(target)


async def record_all(target: str, requests: list[dict[str, Any]], dedupe: bool) -> None:
    table = {"url": target} if target.startswith("postgresql://") else {"path": target}
    store = await open_store(StoreConfig(**table))
    rec = Recorder(store, Metrics(), dedupe_static=dedupe)
    rec.start()
    for i, request in enumerate(requests):
        rec.record(Exchange(request_id=f"r{i}", created_at=time.time(),
                            endpoint="chat/completions", model="bench", stream=False,
                            request=request, response=ANSWER))
    await rec.close()
    await store.close()


class Databases:
    """Throwaway PostgreSQL databases on the server of `admin_url`, dropped at the end."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.names: list[str] = []

    def new(self) -> str:
        name = "slimgate_bench_" + uuid.uuid4().hex[:10]
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        self.names.append(name)
        return self.admin_url.rpartition("/")[0] + "/" + name

    def drop_all(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            for name in self.names:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def bytes_table(requests: list[dict[str, Any]], dbs: Databases | None, tmp: Path) -> None:
    print(f"\nbytes per exchange, {len(requests)} agent requests (τ²-bench + AgentDojo)")
    print(f"{'store':<12}{'dedupe':>8}{'row bytes/ex':>14}{'disk bytes/ex':>15}")
    for engine in ("sqlite", "postgres"):
        if engine == "postgres" and dbs is None:
            continue
        for dedupe in (False, True):
            target = (dbs.new() if engine == "postgres" and dbs else
                      str(tmp / f"bytes-{int(dedupe)}.db"))
            asyncio.run(record_all(target, requests, dedupe))
            row, n = stored_bytes(target)
            print(f"{engine:<12}{'on' if dedupe else 'off':>8}{row / n:>14.0f}"
                  f"{disk_bytes(target) / n:>15.0f}")


async def drive(urls: list[str], requests: list[dict[str, Any]], seconds: float,
                concurrency: int) -> tuple[int, int]:
    """(answered 200, failed) over `seconds`, `concurrency` clients spread over the replicas."""
    ok = failed = 0
    deadline = time.monotonic() + seconds
    bodies = itertools.cycle(requests)
    async with aiohttp.ClientSession(headers={"authorization": "Bearer sk-bench"}) as http:
        async def client(i: int) -> None:
            nonlocal ok, failed
            url = urls[i % len(urls)]
            while time.monotonic() < deadline:
                async with http.post(url, json=next(bodies)) as r:
                    await r.read()
                    ok, failed = (ok + 1, failed) if r.status == 200 else (ok, failed + 1)
        await asyncio.gather(*(client(i) for i in range(concurrency)))
    return ok, failed


def replicas_run(url: str, requests: list[dict[str, Any]], dedupe: bool, tmp: Path,
                 upstream: str, seconds: float, replicas: int = 3) -> None:
    procs, urls = [], []
    try:
        for i in range(replicas):
            port = free_port()
            cfg = tmp / f"replica-{int(dedupe)}-{i}.toml"
            cfg.write_text(gateway_toml(
                port=port, store=url, keys_env="BENCH_KEYS", model="bench", base_url=upstream,
                model_extra="max_retries = 0", more="[worker]\nembedded = false",
                store_extra=f"dedupe_static = {str(dedupe).lower()}"))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve", "--no-worker", "--config",
                 str(cfg)], env={**os.environ, "BENCH_KEYS": "sk-bench"}, cwd=ROOT))
            urls.append(f"http://127.0.0.1:{port}/v1/chat/completions")
        for proc, u in zip(procs, urls, strict=True):
            wait_ready(u.replace("/v1/chat/completions", "/readyz"), proc)
        started = time.monotonic()
        ok, failed = asyncio.run(drive(urls, requests, seconds, 64))
        served_s = time.monotonic() - started
        con = connect(url)
        while con.execute("SELECT COUNT(*) FROM exchanges").fetchone()[0] < ok:
            if time.monotonic() - started > seconds + 60:
                break
            time.sleep(0.05)
        landed_s = time.monotonic() - started
        rows = con.execute("SELECT COUNT(*) FROM exchanges").fetchone()[0]
        con.close()
        row, n = stored_bytes(url)
        print(f"{'on' if dedupe else 'off':>8}{ok / served_s:>10.0f}{rows / landed_s:>10.0f}"
              f"{rows:>9}{failed:>8}{row / max(n, 1):>14.0f}{disk_bytes(url) / max(n, 1):>15.0f}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                    help="a PostgreSQL server's admin URL (databases are made and dropped)")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each replica run")
    ap.add_argument("--rounds", type=int, default=2,
                    help="replica runs per setting, alternating (the machine's load drifts)")
    args = ap.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        requests = agent_requests()
    except DataMissing as e:
        print(f"recording_bench: skipped: {e}")
        return
    tmp = Path(tempfile.mkdtemp(prefix="slimgate-rec-"))
    try:
        dbs: Databases | None = Databases(args.pg)
        dbs.new()  # type: ignore[union-attr]
    except psycopg.OperationalError:
        print(f"no PostgreSQL at {args.pg}: SQLite only")
        dbs = None
    try:
        bytes_table(requests, dbs, tmp)
        if dbs is None:
            return
        up = subprocess.Popen([sys.executable, "-m", "tests.fake_upstream"], cwd=ROOT,
                              stdout=subprocess.PIPE)
        assert up.stdout is not None
        upstream = f"http://127.0.0.1:{int(up.stdout.readline())}/v1"
        try:
            print(f"\n3 replicas on one PostgreSQL, concurrency 64, {args.seconds:g} s each "
                  f"(load average before: {os.getloadavg()[0]:.1f})")
            print(f"{'dedupe':>8}{'req/s':>10}{'rows/s':>10}{'rows':>9}{'failed':>8}"
                  f"{'row bytes/ex':>14}{'disk bytes/ex':>15}")
            for _, dedupe in itertools.product(range(args.rounds), (False, True)):
                replicas_run(dbs.new(), requests, dedupe, tmp, upstream, args.seconds)
        finally:
            up.terminate()
    finally:
        if dbs is not None:
            dbs.drop_all()


if __name__ == "__main__":
    main()
