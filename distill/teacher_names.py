"""Task names from the teacher (`distill.name_tasks = "teacher"`): one short call per new task.

The teacher reads what the task is asked — its masked system prompt, the instruction its
requests repeat, its tool and schema names, its answers' kind — never an instance (a ticket,
a review), and with `store.scrub` the prompt is scrubbed too. Its answer must be a name of
2-5 plain words; anything else, or any failure, keeps the mined label. The call is recorded
as an exchange (`endpoint = "task-name"`, never read as traffic by discovery or training).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections import Counter
from typing import Any

import orjson

from distill.task_labels import recurring_instructions
from distill.task_split import sample
from gateway.config import Config, ModelConfig
from gateway.fingerprint import system_text, tool_names
from gateway.store.catalog import TaskRecord
from gateway.store.db import Connection
from gateway.store.sql import EXCHANGE_COLUMNS, insert_sql

log = logging.getLogger("slimgate.distill")
ENDPOINT = "task-name"
SYSTEM = ("You name the tasks an AI model does, for an operator's dashboard. Given what the "
          "model is asked, reply with a name of 2 to 5 plain words (for example: Ticket "
          "triage, Order issue extraction, Travel booking agent). Reply with the name only.")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9&'/,-]*(?: [A-Za-z0-9&'/,-]+){1,4}")
MAX_NAME_CHARS = 48


def parse_name(content: Any) -> str | None:
    """The teacher's answer as a name: 2-5 words of plain text, else None."""
    if not isinstance(content, str):
        return None
    text = " ".join(content.split()).strip().strip("\"'`*.").strip()
    if text.lower().startswith("name:"):
        text = text[5:].strip()
    if len(text) > MAX_NAME_CHARS or not _NAME.fullmatch(text):
        return None
    return text[:1].upper() + text[1:]


def naming_prompt(task: TaskRecord, rows: list[dict[str, Any]], scrub: bool) -> str:
    """What the task is asked, masked: no instance text, no variable values."""
    picked = [rows[i]["request"] for i in sample(len(rows), 50)]
    req = picked[0]
    rf = req.get("response_format")
    js = rf.get("json_schema") if isinstance(rf, dict) else None
    parts = [f"Answers are: {task.kind}."]
    system = system_text(req)[:800]
    if system:
        parts.append(f"System prompt (variable parts masked): {system}")
    said = recurring_instructions(picked)
    if said:
        parts.append(f"Instruction repeated in the user messages: {said[0][:800]}")
    if tools := tool_names(req):
        parts.append("Tools: " + ", ".join(tools[:20]))
    if isinstance(js, dict) and isinstance(js.get("name"), str):
        parts.append(f"Response schema name: {js['name']}")
    text = "\n".join(parts)
    if scrub:
        from gateway.privacy.scrub import scrub_texts

        text = scrub_texts([text])[0][0]
    return text


def _model(cfg: Config, rows: list[dict[str, Any]]) -> ModelConfig | None:
    if cfg.distill.name_model:
        return cfg.model(cfg.distill.name_model)
    asked = Counter(r["request"].get("model") for r in rows)
    for name, _ in asked.most_common():
        if isinstance(name, str) and (m := cfg.model(name)) is not None:
            return m
    return cfg.models[0] if cfg.models else None


async def _ask(cfg: Config, model: ModelConfig, body: dict[str, Any]) -> tuple[dict[str, Any],
                                                                               str]:
    import aiohttp

    from gateway.upstream.pool import Upstreams, build_backend

    async with aiohttp.ClientSession() as session:
        upstreams = Upstreams(cfg, {m.name: build_backend(m, session) for m in cfg.models})
        try:
            resp, served = await upstreams.complete(model, "chat/completions", body)
        finally:
            await upstreams.aclose()
    return resp, served.model.name


def _record(con: Connection, cfg: Config, task: TaskRecord, body: dict[str, Any],
            resp: dict[str, Any] | None, upstream: str | None, error: str | None,
            started: float) -> None:
    from gateway.cost import CostTable

    usage = (resp or {}).get("usage") or {}
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    m = cfg.model(upstream) if upstream else None
    cost = CostTable().estimate(m.upstream_model, prompt, completion) if m and resp else None
    keep = cfg.store.record_requests
    row: dict[str, Any] = dict.fromkeys(EXCHANGE_COLUMNS)  # columns not named here: NULL
    row |= {
        "request_id": f"name-{task.id}-{os.urandom(4).hex()}", "created_at": started,
        "key_id": None, "endpoint": ENDPOINT, "model": body["model"], "upstream": upstream,
        "backend": "teacher", "task": None, "stream": 0,
        "request": orjson.dumps(body).decode() if keep else None,
        "response": orjson.dumps(resp).decode() if keep and resp else None,
        "status": 200 if resp else 502, "error": error, "finish_reason": None,
        "latency_ms": (time.time() - started) * 1000, "ttft_ms": None,
        "prompt_tokens": prompt, "completion_tokens": completion, "cost_usd": cost,
        "student_version": None, "fallback": None, "api": ENDPOINT, "request_texts": None,
    }
    con.execute(insert_sql("exchanges", EXCHANGE_COLUMNS), tuple(row[c] for c in EXCHANGE_COLUMNS))


def teacher_name(con: Connection, cfg: Config, task: TaskRecord,
                 rows: list[dict[str, Any]]) -> str | None:
    """Ask the teacher once for the task's name; None (keep the mined label) on any failure."""
    model = _model(cfg, rows)
    if model is None or not rows:
        return None
    body = {"model": model.name, "max_tokens": 16, "temperature": 0, "messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": naming_prompt(task, rows, cfg.store.scrub)}]}
    started = time.time()
    resp: dict[str, Any] | None = None
    upstream = error = None
    try:
        resp, upstream = asyncio.run(_ask(cfg, model, body))
    except Exception as e:  # the teacher is down, slow or refuses: the mined label stays
        error = f"{type(e).__name__}: {str(e)[:200]}"
    choices = (resp or {}).get("choices") or [{}]
    name = parse_name(((choices[0] or {}).get("message") or {}).get("content"))
    if resp is not None and name is None:
        error = "the answer is not a name of 2-5 words"
    _record(con, cfg, task, body, resp, upstream, error, started)
    if error:
        log.info("task %s keeps its mined label (%s)", task.id, error)
    return name
