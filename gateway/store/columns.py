"""The columns each writer fills, in order: one list for both engines and the recorder."""

from __future__ import annotations

EXCHANGE_COLUMNS = (
    "request_id", "created_at", "key_id", "endpoint", "model", "upstream", "backend", "task",
    "stream", "request", "response", "status", "error", "finish_reason", "latency_ms",
    "ttft_ms", "prompt_tokens", "completion_tokens", "cost_usd", "student_version", "fallback",
    "api", "request_texts", "source",
)
COMPARISON_COLUMNS = (
    "created_at", "task", "version", "mode", "request_id", "score", "agree", "valid", "detail",
    "student", "teacher", "student_ms", "teacher_ms", "student_tokens", "teacher_tokens",
)
TEXT_COLUMNS = ("hash", "body", "created_at", "seen_at")
RESPONSE_COLUMNS = ("id", "key_id", "created_at", "model", "request_id", "previous_id",
                    "context", "response", "chained", "conversation_bytes")
# A response id written twice (a retried write) keeps the newest row; SQL both engines read.
RESPONSE_UPSERT = "ON CONFLICT (id) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in RESPONSE_COLUMNS if c != "id")
# A static text seen again only moves its `seen_at` (what retention reads).
TEXT_UPSERT = "ON CONFLICT (hash) DO UPDATE SET seen_at = excluded.seen_at"
# A response and the turns it continues, newest first in the walk
# (gateway/responses/conversations.py orders them): previous_id is followed while a row is
# chained. UNION drops an id seen before, so even a cycle written by hand ends. `{mark}` is
# the engine's placeholder.
RESPONSE_CHAIN = (
    "WITH RECURSIVE chain(id) AS (SELECT CAST({mark} AS TEXT) UNION "
    "SELECT r.previous_id FROM responses r JOIN chain c ON r.id = c.id "
    "WHERE r.chained = 1 AND r.previous_id IS NOT NULL) "
    "SELECT r.* FROM responses r JOIN chain c ON r.id = c.id")
