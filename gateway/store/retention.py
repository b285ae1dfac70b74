"""Keeping the store's growth bounded: `store.retention_days` and PostgreSQL's day partitions.

`maintain` is run by the leading worker every hour (and by `slimgate maintain`): it
prepares the coming days' partitions of `exchanges` on PostgreSQL, drops the partitions of
days older than the retention (one cheap `DROP TABLE` per day), and deletes whatever else
is older in batches, so neither engine holds a long write lock.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from gateway.store.db import dialect

log = logging.getLogger("slimgate.store")

DAY = 86_400.0
BATCH = 5_000  # rows per delete statement: each is its own short transaction
# A text written within TextWriter's rewrite window may not show it in `seen_at` yet: texts
# are kept a day longer than the exchanges that refer to them.
TEXT_GRACE_S = DAY

# (table, key column, time column): what retention deletes, oldest first
_TABLES = (("exchanges", "seq", "created_at"), ("comparisons", "seq", "created_at"),
           ("responses", "id", "created_at"), ("texts", "hash", "seen_at"),
           # the answer memory's entries: gateways and the worker forget them at the same age
           ("memory_entries", "seq", "created_at"))


def _delete_before(con: Any, table: str, key: str, column: str, cutoff: float) -> int:
    total = 0
    while True:
        cur = con.execute(
            f"DELETE FROM {table} WHERE {key} IN "  # names from _TABLES, not from input
            f"(SELECT {key} FROM {table} WHERE {column} < ? LIMIT {BATCH})", (cutoff,))
        total += max(cur.rowcount, 0)
        if cur.rowcount < BATCH:
            return total


def maintain(con: Any, retention_days: float, now: float | None = None) -> dict[str, Any]:
    """Prepare partitions and apply retention; returns what was done (for logs and tests)."""
    now = time.time() if now is None else now
    done: dict[str, Any] = {"partitions_made": [], "partitions_dropped": [], "deleted": {}}
    postgres = dialect(con) == "postgres"
    if postgres:
        from gateway.store.pg_schema import day_partitions, ensure_partitions

        done["partitions_made"] = ensure_partitions(con.raw, now)
    if retention_days <= 0:
        return done
    cutoff = now - retention_days * DAY
    if postgres:
        for name, day_end in day_partitions(con.raw):
            if day_end <= cutoff:
                con.execute(f"DROP TABLE IF EXISTS {name}")  # name read from the catalog
                done["partitions_dropped"].append(name)
    for table, key, column in _TABLES:
        limit = cutoff - TEXT_GRACE_S if table == "texts" else cutoff
        done["deleted"][table] = _delete_before(con, table, key, column, limit)
    if any(done["deleted"].values()) or done["partitions_dropped"]:
        log.info("retention (%g days): dropped %s, deleted %s", retention_days,
                 done["partitions_dropped"] or "no partitions", done["deleted"])
    return done
