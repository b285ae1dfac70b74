"""Which of several workers on one store leads: a lock the operating system or the database
drops by itself when its holder dies.

SQLite store: an exclusive `flock` on `<store>.leader` beside the file (released by the
kernel when the process ends, `kill -9` included). PostgreSQL store: a session-level
`pg_try_advisory_lock` on a connection of its own (released when that connection ends).
Both answer `try_acquire()`, `check()` (still held?), `release()`, `held` and `holder`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gateway.config import StoreConfig

log = logging.getLogger("slimgate.leader")

# The advisory-lock key of the leading worker: any constant 64-bit number that no other
# application on the database uses; this one is "slimgate" in ASCII.
PG_LOCK_KEY = 0x736C696D67617465


def whoami() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


class LeaderLock(Protocol):
    @property
    def held(self) -> bool: ...

    def try_acquire(self) -> bool: ...

    def check(self) -> bool: ...

    def release(self) -> None: ...

    def holder(self) -> str | None: ...


class FileLeaderLock:
    """An exclusive `flock` on a file beside the SQLite store. flock belongs to the open
    file, so two opens conflict even within one process (and across processes always)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return self.check()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)  # who leads, for `holder()` and for people reading the file
        os.write(fd, f"{whoami()} since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode())
        self._fd = fd
        return True

    def check(self) -> bool:
        """Still held: the lock cannot be lost while the file is open, but the file can be
        deleted or replaced (then a newcomer could lock the new one), so compare inodes."""
        if self._fd is None:
            return False
        try:
            same = os.fstat(self._fd).st_ino == os.stat(self.path).st_ino
        except OSError:
            same = False
        if not same:
            log.warning("lock file %s was removed or replaced: giving up the lead", self.path)
            self.release()
        return same

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the last descriptor drops the flock

    def holder(self) -> str | None:
        """Who leads, as the leader wrote it; None when nobody holds the lock."""
        if self.held:
            return whoami()
        probe = FileLeaderLock(self.path)
        if not self.path.exists() or probe.try_acquire():
            probe.release()  # nobody holds it (a dead leader's text is stale)
            return None
        return self.path.read_text(errors="replace").split(" since ")[0].strip() or "unknown"


_PG_HELD = ("SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.objsubid = 1 AND (l.classid::bigint << 32) + l.objid::bigint = %s")


class PgLeaderLock:
    """`pg_try_advisory_lock` on a dedicated autocommit connection, kept open by a standby
    too (one connection per worker, not one per poll). TCP keepalives on both sides make the
    server drop a vanished holder's session, and its lock, in about 25 s; a killed process's
    lock goes at once, with its socket."""

    def __init__(self, conninfo: str, password: str | None = None) -> None:
        self._conninfo = conninfo
        self._password = password
        self._con: Any = None
        self._held = False
        self._guard = threading.Lock()  # the gate thread and the main loop both check

    @property
    def held(self) -> bool:
        return self._held

    def _connection(self) -> Any:
        if self._con is not None and not self._con.closed:
            return self._con
        import psycopg

        options: dict[str, Any] = {"password": self._password} if self._password else {}
        con = psycopg.connect(
            self._conninfo, autocommit=True, connect_timeout=5,
            application_name=f"slimgate-worker {whoami()}"[:63],
            keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
            **options)
        # The server's side of the same bound: a holder whose machine vanished is dropped.
        for name, value in (("tcp_keepalives_idle", 10), ("tcp_keepalives_interval", 5),
                            ("tcp_keepalives_count", 3)):
            con.execute(f"SET {name} = {value}")
        self._con = con
        return con

    def try_acquire(self) -> bool:
        with self._guard:
            if self._held:
                return self._check()
            try:
                row = self._connection().execute("SELECT pg_try_advisory_lock(%s)",
                                                 (PG_LOCK_KEY,)).fetchone()
            except Exception:
                self._drop()
                raise
            self._held = bool(row and row[0])
            return self._held

    def _check(self) -> bool:
        try:
            row = self._con.execute(_PG_HELD + " AND l.pid = pg_backend_pid()",
                                    (PG_LOCK_KEY,)).fetchone()
        except Exception as e:  # the connection is gone, and the lock with it
            log.warning("the leader lock's connection failed (%s): giving up the lead", e)
            row = None
        if row is None:
            self._drop()
        return row is not None

    def check(self) -> bool:
        with self._guard:
            return self._held and self._check()

    def _drop(self) -> None:
        con, self._con, self._held = self._con, None, False
        if con is not None:
            with contextlib.suppress(Exception):
                con.close()  # ends the session: the server releases the lock

    def release(self) -> None:
        with self._guard:
            self._drop()

    def holder(self) -> str | None:
        with self._guard:
            if self._held:
                return whoami()
            row = self._connection().execute(
                "SELECT a.application_name FROM pg_stat_activity a WHERE a.pid = ("
                + _PG_HELD + " LIMIT 1)", (PG_LOCK_KEY,)).fetchone()
        if row is None:
            return None
        return str(row[0]).removeprefix("slimgate-worker ") or "unknown"


def leader_lock(store: StoreConfig) -> LeaderLock:
    """The lock for a `[store]`: an advisory lock on PostgreSQL, else the file beside SQLite."""
    if store.url:
        return PgLeaderLock(store.url, store.password())
    return FileLeaderLock(f"{store.path}.leader")
