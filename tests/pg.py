"""A throwaway PostgreSQL database per test (or module), for the store tests on both engines.

The server is `SLIMGATE_TEST_PG_URL` (default: the local one on 127.0.0.1:5432, which
`.ci/run` starts when none runs). Without a server the PostgreSQL cases skip, except under
CI, where they fail: the store must be tested on both engines there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

ADMIN_URL = os.environ.get("SLIMGATE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgres")


def _admin() -> Any:
    import psycopg

    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {ADMIN_URL} is not reachable under CI: {e}")
        pytest.skip(f"no PostgreSQL at {ADMIN_URL}")


@contextmanager
def pg_database() -> Iterator[str]:
    """The URL of a new empty database, dropped afterwards."""
    name = "slimgate_t_" + uuid.uuid4().hex[:12]
    with _admin() as admin:
        admin.execute(f"CREATE DATABASE {name}")
    base, _, _ = ADMIN_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with _admin() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def store_target(backend: str, directory: Any) -> Iterator[str]:
    """A SQLite file path in `directory`, or a fresh PostgreSQL database's URL."""
    if backend == "postgres":
        with pg_database() as url:
            yield url
    else:
        yield str(directory / "store.db")


def store_table(target: str) -> dict[str, Any]:
    """The `[store]` config table for a target from `store_target`."""
    return {"url": target} if target.startswith("postgresql://") else {"path": target}
