"""`distill.name_tasks = "teacher"`: one call per new task, only masked text sent, strict
parsing, the mined label kept on any failure, the call recorded apart from the traffic."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from distill.pipeline import discover_tasks
from distill.teacher_names import ENDPOINT, parse_name
from gateway.config import Config
from gateway.offline.workload import generate
from gateway.store.catalog import list_tasks
from gateway.store.db import connect
from gateway.store.sql import EXCHANGE_COLUMNS, insert_sql
from tests.fake_upstream import FakeUpstream
from tests.helpers import gateway_config


class Namer(FakeUpstream):
    """A teacher that answers every chat request with `reply`."""

    reply = "Support ticket triage"

    def _answer(self, body: dict[str, Any], text: str, tool_result: str | None = None
                ) -> dict[str, Any]:
        return {"role": "assistant", "content": self.reply}


@pytest.fixture
def namer() -> Iterator[Namer]:
    with Namer() as n:
        yield n


@pytest.mark.parametrize(("answer", "name"), [
    ("Support ticket triage", "Support ticket triage"),
    ('"order issue extraction."', "Order issue extraction"),
    ("Name: Travel booking agent", "Travel booking agent"),
    ("Triage", None),  # one word
    ("This task classifies incoming support tickets into queues", None),  # a sentence
    ('{"name": "x"}', None),
    (None, None),
])
def test_only_a_short_plain_name_is_taken(answer: Any, name: str | None) -> None:
    assert parse_name(answer) == name


def _record_traffic(db: str, n: int = 60) -> list[str]:
    """Ticket-triage requests as the gateway records them; returns their user texts."""
    con = connect(db)
    texts = []
    for i, item in enumerate(generate(n * 6, seed=5, kinds=["ticket_triage"])[:n]):
        texts.append(item.request["messages"][-1]["content"])
        row = dict.fromkeys(EXCHANGE_COLUMNS)
        row.update(request_id=f"r{i}", created_at=time.time(), endpoint="chat/completions",
                   model="gpt-test", upstream="gpt-test", backend="teacher", stream=0,
                   request=orjson.dumps({"model": "gpt-test", **item.request}).decode(),
                   response=orjson.dumps({"choices": [{"message": item.answer,
                                                       "finish_reason": "stop"}]}).decode(),
                   status=200, api="chat/completions")
        con.execute(insert_sql("exchanges", EXCHANGE_COLUMNS),
                    tuple(row[c] for c in EXCHANGE_COLUMNS))
    con.close()
    return texts


def _config(tmp_path: Path, upstream: FakeUpstream) -> Config:
    return gateway_config(tmp_path, upstream, distill={"name_tasks": "teacher"},
                          store={"path": str(tmp_path / "s.db"), "scrub": True})


def test_a_new_task_is_named_by_the_teacher_once_from_masked_text(
    tmp_path: Path, namer: Namer
) -> None:
    cfg = _config(tmp_path, namer)
    texts = _record_traffic(cfg.store.path)
    con = connect(cfg.store.path)
    assert discover_tasks(con, cfg, embedder=None) == 1
    assert discover_tasks(con, cfg, embedder=None) == 1  # known now: not asked again
    [task] = list_tasks(con)
    calls = con.execute("SELECT request, status, error, task FROM exchanges WHERE endpoint = ?",
                        (ENDPOINT,)).fetchall()
    con.close()
    assert (task.label, task.info["label_from"]) == ("Support ticket triage", "teacher")
    assert len(namer.requests) == 1 and len(calls) == 1  # one call, recorded
    assert calls[0]["status"] == 200 and calls[0]["error"] is None and calls[0]["task"] is None
    sent = orjson.dumps(namer.requests[0]).decode()
    assert "triage incoming support tickets" in sent  # what it is asked
    instance = [t.removeprefix("Ticket: ").split(".")[0] for t in texts]
    assert not any(words in sent for words in instance)  # never what a request carried


def test_any_failure_keeps_the_mined_label(tmp_path: Path, namer: Namer) -> None:
    namer.reply = "I would call this task the support ticket classification one"
    cfg = _config(tmp_path, namer)
    _record_traffic(cfg.store.path)
    con = connect(cfg.store.path)
    discover_tasks(con, cfg, embedder=None)
    [task] = list_tasks(con)
    [call] = con.execute("SELECT error FROM exchanges WHERE endpoint = ?", (ENDPOINT,)).fetchall()
    con.close()
    assert (task.label, task.info["label_from"]) == ("Triage incoming support tickets",
                                                     "instruction")
    assert "not a name" in call["error"]


def test_an_unreachable_teacher_keeps_the_mined_label(tmp_path: Path) -> None:
    from gateway.offline.local import free_port

    down = FakeUpstream()
    down.port = free_port()  # nothing listens there
    cfg = _config(tmp_path, down)
    _record_traffic(cfg.store.path)
    con = connect(cfg.store.path)
    discover_tasks(con, cfg, embedder=None)
    [task] = list_tasks(con)
    con.close()
    assert task.info["label_from"] == "instruction"


