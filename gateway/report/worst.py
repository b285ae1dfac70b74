"""The worst disagreements of a report: the lowest-scoring live and held-out comparisons of
one student version, with the prompt and both answers as text for people.

The only part of the report that reads request and answer bodies; `gateway.report.data` calls
`worst_disagreements` once per task and re-exports this module's names.
"""

from __future__ import annotations

from typing import Any

import orjson

TEXT_LIMIT = 4000  # characters kept of each answer and prompt in `worst`


def answer_for_people(message: Any) -> str:
    """An assistant message for people: its text, then one `name(arguments)` per tool call."""
    if not isinstance(message, dict):
        text = "" if message is None else str(message)
    else:
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
        parts = [str(content)] if content else []
        for call in message.get("tool_calls") or []:
            fn = (call or {}).get("function") or {}
            parts.append(f"{fn.get('name', '?')}({fn.get('arguments', '')})")
        text = "\n".join(parts)
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + "…"


def _loads(raw: str | None) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return raw


def _last_user_message(con: Any, request_id: str) -> str | None:
    row = con.execute(
        "SELECT request FROM exchanges WHERE request_id = ? AND request IS NOT NULL "
        "ORDER BY seq DESC LIMIT 1", (request_id,),
    ).fetchone()
    body = _loads(row[0]) if row else None
    messages = body.get("messages") if isinstance(body, dict) else None
    for m in reversed(messages if isinstance(messages, list) else []):
        if isinstance(m, dict) and m.get("role") == "user":
            return answer_for_people({"content": m.get("content")})
    return None


def worst_disagreements(
    con: Any, task_id: str, version: int | None, start: float, limit: int
) -> list[dict[str, Any]]:
    """Lowest-scoring disagreements of one version: up to `limit` live, `limit` held-out."""
    if version is None or limit == 0:
        return []
    cols = "request_id, score, valid, detail, student, teacher"
    live = con.execute(
        f"SELECT 'live' AS source, mode, created_at, {cols} FROM comparisons WHERE task = ? "
        "AND version = ? AND created_at >= ? AND (agree = 0 OR valid = 0) "
        "ORDER BY score, created_at DESC LIMIT ?", (task_id, version, start, limit),
    ).fetchall()
    held = con.execute(
        f"SELECT 'heldout' AS source, NULL AS mode, NULL AS created_at, {cols} FROM evaluations "
        "WHERE task = ? AND version = ? AND (agree = 0 OR valid = 0) ORDER BY score LIMIT ?",
        (task_id, version, limit),
    ).fetchall()
    return [
        {"source": r["source"], "mode": r["mode"], "created_at": r["created_at"],
         "version": version, "request_id": r["request_id"], "score": r["score"],
         "valid": bool(r["valid"]), "detail": r["detail"],
         "prompt": _last_user_message(con, r["request_id"]),
         "student": answer_for_people(_loads(r["student"])),
         "teacher": answer_for_people(_loads(r["teacher"]))}
        for r in sorted([*live, *held], key=lambda r: r["score"])
    ]
