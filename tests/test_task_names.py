"""Task names people read: labels from what a task is asked, and operators' names kept.

The labeller on the demo workload (specific and generic prompts), re-discovery keeping or
improving labels, and renaming through the CLI, the admin API and the dashboard's form.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from distill.discover import discover
from distill.instruction_label import instruction_label
from gateway.cli import main
from gateway.config import Config
from gateway.offline.workload import GENERIC_CAPABLE, KINDS, generate
from gateway.report import build_report, render_html
from gateway.store.catalog import TaskRecord, get_task, list_tasks, upsert_task
from gateway.store.db import connect
from tests.fake_upstream import FakeUpstream
from tests.helpers import gateway_config, running_client
from tests.helpers_report import NOW, A, build_store
from tests.pg import store_table

ADMIN = "sk-admin-names-1"


@pytest.mark.parametrize(("prompt", "label"), [
    ("You triage incoming support tickets. Answer with exactly one label: billing, technical, "
     "account, shipping or other.", "Triage incoming support tickets"),
    ("Classify this support ticket as billing, technical, account, shipping or other. Reply "
     "with the label only.", "Classify this support ticket"),
    ("You are TripMate, the travel assistant of Wayfarer Travel Ltd. Today is 2025-03-01.",
     "Travel assistant of Wayfarer Travel Ltd"),
    ("<instructions>\nYou are a customer service agent that helps the user according to the "
     "<policy> provided below.", "Customer service agent"),
    ("Write a warm customer-service reply of 60-120 words for Blue Harbor Coffee.",
     "Write a warm customer-service reply"),
    ("You are a helpful assistant.", None),  # says nothing of a task
    ("Hi there!\nThanks.", None),  # a greeting many users open with
    ("Today is 2025-03-01. Reply to ana@example.com about order 88231.", None),
])
def test_instruction_label_names_the_task_from_its_first_clause(
    prompt: str, label: str | None
) -> None:
    assert instruction_label(prompt) == label


def _rows(generic: bool) -> tuple[list[dict], dict[int, str]]:
    items = generate(100 * len(KINDS), seed=3, generic=GENERIC_CAPABLE if generic else ())
    rows = [{"seq": i + 1, "task": None, "request": it.request,
             "response": {"choices": [{"message": it.answer, "finish_reason": "stop"}]}}
            for i, it in enumerate(items)]
    return rows, {i + 1: it.task for i, it in enumerate(items)}


def _labels(found: list[TaskRecord], assignments: list[tuple[str | None, int]],
            truth: dict[int, str]) -> dict[str, str]:
    held: dict[str, Counter[str]] = {}
    for task, seq in assignments:
        held.setdefault(task or "", Counter())[truth[seq]] += 1
    return {held[t.id].most_common(1)[0][0]: t.label for t in found}


@pytest.mark.parametrize("generic", [False, True], ids=["specific", "generic"])
def test_discovered_tasks_are_named_by_what_they_are_asked(generic: bool) -> None:
    """Before: TF-IDF terms ("review, quality, recommend", "ticket, account, billing")."""
    rows, truth = _rows(generic)
    found = discover(rows, min_task_examples=20)
    labels = _labels(found.tasks, found.assignments, truth)
    assert labels["travel_tools"] == "tools: book_hotel, get_weather, search_flights"
    assert labels["order_extract"] == "json: order_issue"
    assert labels["intent_router"] == "Intent router of the HomeHub smart-home assistant"
    if generic:  # the instruction mined from the user turns under "You are a helpful assistant."
        assert labels["reply_writer"] == "Write a warm customer-service reply"
        assert labels["ticket_triage"].split()[-1] in ("ticket", "to")  # one of three wordings
        assert "sentiment" in labels["sentiment"] or "review" in labels["sentiment"]
    else:  # the system prompt's first clause; brands named apart are left out
        assert labels["reply_writer"] == "Customer-care writer"
        assert labels["ticket_triage"] == "Triage incoming support tickets"
        assert labels["sentiment"] == "Analyse product reviews"
    assert all(t.info["label_from"] != "terms" for t in found.tasks)


def test_rediscovery_improves_term_labels_and_keeps_the_rest() -> None:
    rows, truth = _rows(False)
    first = discover(rows, min_task_examples=20)
    truth_of = {v: k for k, v in _labels(first.tasks, first.assignments, truth).items()}
    by_truth = {truth_of[t.label]: t.id for t in first.tasks}
    # Labels an older slimgate wrote (no source recorded): TF-IDF terms, and a tools label.
    legacy = {"Triage incoming support tickets": "ticket, reach, account"}
    existing = []
    for t in first.tasks:
        info = {k: v for k, v in t.info.items() if k != "label_from" or t.label not in legacy}
        existing.append(dataclasses.replace(t, label=legacy.get(t.label, t.label), info=info))
    mined = next(t for t in existing if t.id == by_truth["sentiment"])
    mined.label = "sentiment v1"  # mined from an instruction earlier: a policy may match it
    named = next(t for t in existing if t.id == by_truth["reply_writer"])
    named.label, named.named_by = "Customer replies", "operator"
    again = discover(rows, existing=existing, min_task_examples=20)
    labels = _labels(again.tasks, again.assignments, truth)
    assert labels["ticket_triage"] == "Triage incoming support tickets"  # terms gave way
    assert labels["sentiment"] == "sentiment v1"  # not terms: kept
    assert labels["reply_writer"] == "Customer replies"  # the operator's
    assert labels["travel_tools"].startswith("tools: ")


@pytest.fixture
def store_with_task(tmp_path: Path, store_target: str) -> tuple[Path, str]:
    """A store on each engine (SQLite, PostgreSQL) holding one task, and its config file."""
    con = connect(store_target)
    upsert_task(con, TaskRecord(id="t-0123456789", label="hi, order, late", kind="text",
                                info={"label_from": "terms"}))
    con.close()
    key, value = next(iter(store_table(store_target).items()))
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[store]\n{key} = "{value}"\n')
    return cfg, store_target


def test_cli_rename_is_kept_by_discovery_upserts(
    store_with_task: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, db = store_with_task
    c = ["--config", str(cfg)]
    assert main(["tasks", "rename", "t-0123456789", "Support replies", *c]) == 0
    assert main(["tasks", *c]) == 0
    assert "Support replies" in capsys.readouterr().out
    con = connect(db)
    # A discovery pass that read the task before the rename writes its stale label back.
    upsert_task(con, TaskRecord(id="t-0123456789", label="hi, order, late", kind="text"))
    task = get_task(con, "t-0123456789")
    con.close()
    assert task is not None and (task.label, task.named_by) == ("Support replies", "operator")
    assert main(["tasks", "rename", "t-nope", "x", *c]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["tasks", "rename", "t-0123456789", "   ", *c]) == 1
    assert "cannot be empty" in capsys.readouterr().err


async def test_admin_api_and_dashboard_rename(
    tmp_path: Path, upstream: FakeUpstream, keys: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLIMGATE_ADMIN_KEYS", ADMIN)
    config: Config = gateway_config(tmp_path, upstream)
    build_store(Path(config.store.path), end=NOW)
    admin = {"authorization": f"Bearer {ADMIN}"}
    async with running_client(config) as c:
        refused = await c.post(f"/admin/tasks/{A}/rename", json={"name": "x"},
                               headers={"authorization": f"Bearer {keys}"})
        ok = await c.post(f"/admin/tasks/{A}/rename", json={"name": " Invoice  fields "},
                          headers=admin)
        empty = await c.post(f"/admin/tasks/{A}/rename", json={"name": ""}, headers=admin)
        missing = await c.post("/admin/tasks/t-nope/rename", json={"name": "x"}, headers=admin)
        listed = (await c.get("/admin/tasks", headers=admin)).json()["data"]
        page = await c.get("/dashboard?refresh=0", headers=admin)
        form = {"content-type": "application/x-www-form-urlencoded"}
        posted = await c.post(f"/dashboard/tasks/{A}/rename", content="name=Invoices+v2",
                              headers={**admin, **form, "origin": "http://gw"})
        forged = await c.post(f"/dashboard/tasks/{A}/rename", content="name=pwned",
                              headers={**admin, **form, "origin": "https://evil.example"})
    assert refused.status_code == 401
    assert ok.status_code == 200 and ok.json()["label"] == "Invoice fields"
    assert ok.json()["named_by"].startswith("admin:")
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "name"
    assert missing.status_code == 404
    assert any(t["id"] == A and t["label"] == "Invoice fields" for t in listed)
    assert f'action="/dashboard/tasks/{A}/rename"' in page.text and "Invoice fields" in page.text
    assert "form-action 'self'" in page.headers["content-security-policy"]
    assert posted.status_code == 303 and posted.headers["location"].startswith("/dashboard#")
    assert forged.status_code == 403
    con = connect(config.store.path)
    task = next(t for t in list_tasks(con) if t.id == A)
    con.close()
    assert task.label == "Invoices v2"


def test_exported_report_has_no_forms(tmp_path: Path) -> None:
    """`slimgate report --html` writes a file: no form posts from it anywhere."""
    build_store(tmp_path / "s.db")
    page = render_html(build_report(str(tmp_path / "s.db"), now=NOW))
    assert "<form" not in page and A in page
