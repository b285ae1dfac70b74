"""Stored Responses: what a long conversation adds to the store, and what the in-process
cache keeps resident. The gateway runs in-process on a SQLite store, with a loopback chat
upstream that answers "ok" (so the stored bytes are the client's own input).

Part 1 sends a 12-turn `previous_response_id` chain of 0.5 MB turns (a 6 MB conversation)
and prints the growth of the `responses` table, of `exchanges`, and of the store's files.
Part 2 sends 60 independent 2 MB `store: true` responses and prints the JSON bytes the
cache holds and the process's resident-size growth. Default config in both parts.

    python bench/responses_state_bench.py
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402
from aiohttp import web  # noqa: E402

from gateway.app import create_app  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from gateway.offline.local import free_port  # noqa: E402

MB = 1_000_000


async def _upstream(port: int) -> web.AppRunner:
    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    app = web.Application(client_max_size=256 * MB)
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def _rss() -> int:
    """Resident bytes, after glibc hands freed memory back (transient 2 MB bodies would
    otherwise stay counted)."""
    import ctypes

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _files(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


async def main() -> None:
    port = free_port()
    runner = await _upstream(port)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "store.db"
        config = parse_config({
            "server": {"api_keys_env": "RESPONSES_BENCH_NO_KEYS", "max_body_bytes": 64 * MB},
            "store": {"path": str(db)},
            "models": [{"name": "m", "provider": "openai", "max_retries": 0,
                        "base_url": f"http://127.0.0.1:{port}/v1", "timeout_s": 60}],
            "worker": {"embedded": False}})
        app = create_app(config)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://gw",
                timeout=120) as client:
            state = app.state.slimgate

            async def create(body: dict[str, Any]) -> str:
                r = await client.post("/v1/responses", json={"model": "m", **body})
                r.raise_for_status()
                return str(r.json()["id"])

            def table_mb(table: str, a: str, b: str) -> float:
                import sqlite3

                con = sqlite3.connect(db)  # table and column names from this file
                total = con.execute(f"SELECT COALESCE(SUM(COALESCE(length({a}), 0) + "
                                    f"COALESCE(length({b}), 0)), 0) FROM {table}").fetchone()[0]
                con.close()
                return int(total) / MB

            # Part 1: a 12-turn chain of 0.5 MB turns
            await state.recorder.flush()
            files0 = _files(db)
            previous: str | None = None
            for n in range(12):
                body: dict[str, Any] = {"input": f"turn {n} " + chr(97 + n) * (MB // 2)}
                if previous:
                    body["previous_response_id"] = previous
                previous = await create(body)
            await state.recorder.flush()
            print("12-turn chain of 0.5 MB turns (6 MB conversation):")
            print(f"  responses table  {table_mb('responses', 'context', 'response'):7.1f} MB")
            print(f"  exchanges table  {table_mb('exchanges', 'request', 'response'):7.1f} MB")
            print(f"  store files grew {(_files(db) - files0) / MB:7.1f} MB")

            # Part 2: 60 independent 2 MB stored responses
            rss0 = _rss()
            for i in range(60):
                await create({"input": f"{i:02d} " + "z" * (2 * MB)})
            await state.recorder.flush()
            cache = state.responses.conversations._cache
            held = sum(len(orjson.dumps(s.context)) + len(orjson.dumps(s.response))
                       for s in cache.values())
            print("60 stored responses of 2 MB:")
            print(f"  cache holds {len(cache)} responses, {held / MB:.1f} MB of JSON")
            print(f"  resident size grew {(_rss() - rss0) / MB:.1f} MB")
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
