"""Recorded chat exchanges as JSONL traces.

A trace line is `{"request": {...chat request...}, "response": {...chat.completion...}}`.
`export_traces` writes a store's successful teacher exchanges in that format, so users can
replay their own traffic with `slimgate replay-teacher`; `read_traces` reads them back.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from gateway.store.db import connect, is_postgres_url
from gateway.store.texts import TextLookup, restore


@dataclass
class Trace:
    request: dict[str, Any]  # the chat request as the client sent it
    response: dict[str, Any]  # the chat.completion answer (streams already assembled)


class TraceError(Exception):
    """A trace file is missing or has a line that is not a trace."""


def read_traces(path: str | os.PathLike[str]) -> Iterator[Trace]:
    """The traces of a JSONL file, in order; blank lines are skipped."""
    p = Path(path)
    try:
        f = p.open("rb")
    except OSError as e:
        raise TraceError(f"cannot read traces from '{p}': {e.strerror}") from None
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise TraceError(f"{p}:{n}: not JSON ({e})") from None
            if not isinstance(obj, dict):
                raise TraceError(f"{p}:{n}: expected an object with 'request' and 'response'")
            req, resp = obj.get("request"), obj.get("response")
            if not isinstance(req, dict) or not isinstance(req.get("messages"), list):
                raise TraceError(f"{p}:{n}: 'request' must be a chat request with 'messages'")
            if not isinstance(resp, dict) or not isinstance(resp.get("choices"), list) \
                    or not resp["choices"]:
                raise TraceError(f"{p}:{n}: 'response' must be a chat.completion with 'choices'")
            yield Trace(req, resp)


def export_traces(
    store: Any,
    out: str | os.PathLike[str] | IO[bytes],
    *,
    task: str | None = None,
    model: str | None = None,
    scrub: bool = False,
) -> int:
    """Write the successful teacher chat exchanges of `store` (a `StoreConfig`, SQLite path or
    PostgreSQL URL) to `out` as JSONL.

    `out` is a path ("-" for standard output) or a binary file. `task` keeps one task's
    exchanges; `model` those a client sent under that model name; `scrub` (the CLI passes
    `store.scrub`) scrubs each line, rows recorded before scrubbing was on included.
    Returns the lines written.
    """
    sql = ("SELECT request, request_texts, response, api FROM exchanges "
           "WHERE endpoint = 'chat/completions' AND status = 200 AND backend = 'teacher' "
           "AND request IS NOT NULL AND response IS NOT NULL")
    params: list[Any] = []
    if task is not None:
        sql += " AND task = ?"
        params.append(task)
    if model is not None:
        sql += " AND model = ?"
        params.append(model)
    target = store.target if hasattr(store, "target") else os.fspath(store)
    if not is_postgres_url(target) and not Path(target).is_file():  # connect() would create it
        raise TraceError(f"store '{target}' does not exist")
    con = connect(store if hasattr(store, "target") else target)
    written = 0
    try:
        with ExitStack() as stack:
            if isinstance(out, (str, os.PathLike)):
                sink: IO[bytes] = (sys.stdout.buffer if os.fspath(out) == "-"
                                   else stack.enter_context(Path(out).open("wb")))
            else:
                sink = out
            texts = TextLookup(con)
            for row in con.execute(sql + " ORDER BY seq", params):
                request = restore(orjson.loads(row["request"]), row["request_texts"], texts)
                request_json, response_json = orjson.dumps(request).decode(), row["response"]
                if scrub:
                    from gateway.privacy.scrub import scrub_texts

                    request_json, response_json = scrub_texts([request_json, response_json])[0]
                response = orjson.loads(response_json)
                if not response.get("choices"):
                    continue
                # `api`: what the client called; a Responses request is kept in chat form
                line = {"request": orjson.loads(request_json), "response": response,
                        "api": row["api"] or "chat/completions"}
                sink.write(orjson.dumps(line) + b"\n")
                written += 1
            sink.flush()
    finally:
        con.close()
    return written
