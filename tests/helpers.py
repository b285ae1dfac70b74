"""What test modules share to drive the gateway in-process: configs, keys, a scripted student,
a task row, request bodies, and clients that run the app with its lifespan.

Test modules import from here (and the other helper modules: `fake_upstream`, `pg`,
`served`, ...), never from one another: `tests/test_suite_layout.py` checks that.
Fixtures live in `conftest.py`.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

from gateway.app import create_app
from gateway.config import Config, parse_config
from gateway.fingerprint import fingerprint
from gateway.offline.workload import WorkItem, to_traces
from gateway.store.db import connect
from gateway.upstream.base import UpstreamFailure
from tests.fake_upstream import FakeUpstream

# --- keys ---------------------------------------------------------------------------------

KEY_A, KEY_B = "sk-gw-test-1", "sk-gw-test-2"  # the client keys the `keys` fixture sets
TEST_KEY = KEY_A  # what the `keys` fixture returns
METRICS_KEY = "sk-metrics-test"
METRICS_AUTH = {"authorization": f"Bearer {METRICS_KEY}"}


def key_id(key: str) -> str:
    """A key's id (sha256 hex, first 12 digits): the tenant of the tasks its requests reach."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


TEST_TENANT = key_id(TEST_KEY)

# --- configs and clients ------------------------------------------------------------------


def gateway_config(tmp_path: Path, upstream: FakeUpstream, **overrides: Any) -> Config:
    """A gateway in front of the fake upstream, its store in `tmp_path`; top-level tables
    in `overrides` replace the defaults."""
    data: dict[str, Any] = {
        "server": {"api_keys_env": "SLIMGATE_TEST_KEYS",
                   "metrics_keys_env": "SLIMGATE_TEST_METRICS_KEYS"},
        "store": {"path": str(tmp_path / "slimgate.db")},
        "models": [
            {"name": "gpt-test", "provider": "openai", "base_url": upstream.base_url,
             "model": "upstream-model", "api_key_env": "SLIMGATE_TEST_PROVIDER_KEY",
             "timeout_s": 1.0, "max_retries": 2, "backoff_initial_s": 0.01},
            {"name": "backup", "provider": "openai", "base_url": upstream.base_url,
             "model": "backup-model", "timeout_s": 1.0, "max_retries": 0},
            {"name": "with-fallback", "provider": "openai", "base_url": upstream.base_url,
             "model": "primary-model", "max_retries": 0, "fallbacks": ["backup"],
             "timeout_s": 1.0},
        ],
    }
    for key, value in overrides.items():
        data[key] = value
    return parse_config(data)


@asynccontextmanager
async def running_client(config: Config) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process with its lifespan, and a client talking to it."""
    app = create_app(config)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def post_all(app: Any, requests: list[tuple[str, dict[str, Any], dict[str, str]]],
                   ) -> list[httpx.Response]:
    """Start `app`, post each (key, chat body, extra headers) in turn, then let its shadow
    comparisons and recorder finish; the responses in order."""
    out = []
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://gw") as c:
        for key, body, headers in requests:
            out.append(await c.post("/v1/chat/completions", json=body,
                                    headers={"authorization": f"Bearer {key}", **headers}))
        await app.state.slimgate.shadow.drain()
        await app.state.slimgate.recorder.flush()
    return out


async def serve_chats(app: Any, key: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """`post_all` with one key and no extra headers."""
    return await post_all(app, [(key, body, {}) for body in bodies])


async def rows(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The exchanges a `running_client`'s app has recorded, after flushing its recorder."""
    state = client.app.state.slimgate  # type: ignore[attr-defined]
    await state.recorder.flush()
    return await state.store.exchanges()  # type: ignore[no-any-return]


def chat(text: str, **extra: object) -> dict[str, Any]:
    """A one-message chat body for the `gpt-test` model."""
    return {"model": "gpt-test", "messages": [{"role": "user", "content": text}], **extra}


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    """The typed events of a Responses API stream; checks each SSE name matches its payload."""
    out = []
    for block in raw.split(b"\n\n"):
        lines = dict(line.split(b": ", 1) for line in block.splitlines() if b": " in line)
        if b"data" in lines:
            ev = orjson.loads(lines[b"data"])
            assert lines[b"event"].decode() == ev["type"]  # the SSE name matches the payload
            out.append(ev)
    return out


# --- a scripted student and its task --------------------------------------------------------

SYSTEM = "You extract order data. Answer with JSON only."
JSON_BODY = {
    "model": "gpt-test",
    "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "order 42"}],
    "response_format": {"type": "json_object"},
}


class ScriptedStudent:
    """A student whose answer the test sets; it counts calls and finished answers. With a
    `gate` (an asyncio.Event) each answer waits until the test sets it."""

    def __init__(self, content: str = '{"echo": "order 42"}', delay_s: float = 0.0,
                 fail: bool = False, gate: asyncio.Event | None = None) -> None:
        self.name = "scripted"
        self.content = content
        self.delay_s = delay_s
        self.fail = fail
        self.gate = gate
        self.calls = 0
        self.finished = 0

    async def complete(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.delay_s)
        self.finished += 1
        if self.fail:
            raise UpstreamFailure("server", "scripted student crash")
        return {"id": "chatcmpl-student", "object": "chat.completion", "created": 0,
                "model": "student", "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": self.content}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}

    async def stream(self, endpoint: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        raise AssertionError("the gateway checks a student's whole answer before streaming it")
        yield {}  # pragma: no cover

    async def aclose(self) -> None:
        pass


def add_task(db: str, stage: str, *, step: int = 0, pin: str | None = None,
             body: dict[str, Any] = JSON_BODY, kind: str = "json",
             tenant: str | None = TEST_TENANT) -> None:
    """A discovered task 't-orders' holding JSON_BODY's fingerprint; `tenant`: the namespace
    (a key id) whose callers it takes (the `keys` fixture's key), None on an open gateway."""
    con = connect(db)
    info = orjson.dumps({"fingerprints": [fingerprint(body)],
                         **({"tenant": tenant} if tenant else {})}).decode()
    con.execute(
        "INSERT INTO tasks (id, label, kind, stage, explicit, info, created_at, updated_at, "
        "step, stage_since, student_version, pin) VALUES ('t-orders', 'orders', ?, ?, 0, ?, "
        "?, ?, ?, ?, 1, ?)",
        (kind, stage, info, time.time(), time.time(), step, time.time(), pin),
    )
    con.close()


async def app_with_student(tmp_path: Path, upstream: FakeUpstream, student: ScriptedStudent,
                           stage: str, **overrides: Any) -> tuple[Any, Config]:
    """An app (not started) whose task 't-orders' is at `stage`, served by `student`."""
    cfg = gateway_config(tmp_path, upstream, **overrides)
    add_task(cfg.store.path, stage)
    app = create_app(cfg, student_factory=lambda task, version: student)
    return app, cfg


# --- recorded rows and services -----------------------------------------------------------


def rows_of(items: list[WorkItem], first_seq: int = 1) -> list[dict[str, Any]]:
    """Workload items as `catalog.chat_exchanges` rows, as the gateway would have recorded
    them."""
    return [{"seq": first_seq + i, "request_id": f"req-{first_seq + i}", "created_at": 0.0,
             "task": None, "status": 200, "finish_reason": "stop", "backend": "teacher",
             "request": line["request"], "response": line["response"]}
            for i, line in enumerate(to_traces(items))]


REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_up() -> bool:
    """Whether a Redis answers PING on 127.0.0.1:6379."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False
