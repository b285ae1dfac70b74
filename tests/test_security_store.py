"""Security: what lands on disk, and what the worker, the demo and the CLI may touch.

Comparisons obey `store.record_requests` and `store.scrub` like exchanges (and so does the
trace export); the store is 0600 and students 0700; `clean_partials` deletes nothing
outside `<students>/<task>/v<N>`; the demo refuses a directory it did not make; task
labels are not rich markup; the worker subprocess gets no key.
"""

from __future__ import annotations

import io
import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from distill.worker import clean_partials
from gateway.config import parse_config
from gateway.metrics import Metrics
from gateway.registry import Registry
from gateway.store.db import connect
from gateway.store.recorder import Exchange, LiveComparison, Recorder
from gateway.store.sqlite import SqliteStore
from gateway.worker_process import worker_env

EMAIL = "jane.doe@example.com"


def _comparison() -> LiveComparison:
    return LiveComparison(
        created_at=time.time(), task="t", version=1, mode="audit", request_id="r1", score=0.2,
        agree=False, valid=True, detail=f"content differs: {EMAIL}",
        student={"role": "assistant", "content": f"mail {EMAIL}"},
        teacher={"role": "assistant", "content": f"write to {EMAIL}"},
        student_ms=1.0, teacher_ms=2.0, student_tokens=3, teacher_tokens=4)


@pytest.mark.parametrize("settings", [{"record_bodies": False}, {"scrub": True}])
async def test_comparisons_follow_record_requests_and_scrub(
    tmp_path: Path, settings: dict[str, bool],
) -> None:
    store = await SqliteStore.open(str(tmp_path / "s.db"))
    recorder = Recorder(store, Metrics(), **settings)
    recorder.start()
    recorder.record(_comparison())
    await recorder.close()
    await store.close()
    con = sqlite3.connect(tmp_path / "s.db")
    row = con.execute("SELECT student, teacher, detail FROM comparisons").fetchone()
    con.close()
    assert EMAIL not in " ".join(str(v) for v in row)
    if settings.get("record_bodies") is False:
        assert row[0] is None and row[1] is None


async def test_trace_export_scrubs_when_the_store_scrubs(tmp_path: Path) -> None:
    from gateway.offline.traces import export_traces

    store = await SqliteStore.open(str(tmp_path / "s.db"))
    recorder = Recorder(store, Metrics())  # recorded before scrubbing was switched on
    recorder.start()
    recorder.record(Exchange(
        request_id="r", created_at=time.time(), endpoint="chat/completions", model="m",
        stream=False, request={"messages": [{"role": "user", "content": EMAIL}]},
        response={"choices": [{"message": {"role": "assistant", "content": EMAIL}}]}))
    await recorder.close()
    await store.close()
    out = io.BytesIO()
    assert export_traces(tmp_path / "s.db", out, scrub=True) == 1
    assert EMAIL not in out.getvalue().decode() and b"<EMAIL_1>" in out.getvalue()


def test_store_is_0600_and_students_0700(tmp_path: Path) -> None:
    db = tmp_path / "new" / "slimgate.db"
    connect(str(db)).close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    reg = Registry(tmp_path / "students")
    made = reg.private_dir(reg.task_dir("t") / ".v1.partial")
    for d in (reg.root, made.parent, made):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700


def test_clean_partials_stays_inside_the_students_dir(tmp_path: Path) -> None:
    root = tmp_path / "students"
    outside = tmp_path / "precious"
    (outside / "v1").mkdir(parents=True)
    (outside / "v1" / "data.txt").write_text("keep me")
    (outside / "keep").mkdir()
    (root / "t").mkdir(parents=True)
    for name in ("v1", ".v2.partial"):
        (root / "t" / name).mkdir()  # half-trained: removed
    for name in ("vx", "v1.bak", "version", "v3"):
        (root / "t" / name).mkdir()
    (root / "t" / "v3" / "slimgate.json").write_text("{}")  # complete: kept
    (root / "linked").symlink_to(outside)  # a task dir that is a link: never entered
    (root / "t" / "v4").symlink_to(outside / "keep")  # a version that is a link: never removed
    assert clean_partials(str(root)) == 2
    assert sorted(p.name for p in (root / "t").iterdir()) == ["v1.bak", "v3", "v4", "version",
                                                              "vx"]
    assert (outside / "v1" / "data.txt").read_text() == "keep me" and (outside / "keep").is_dir()


def test_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    from gateway.offline.demo import DEMO_MARKER, DemoDirError, prepare_demo_dir

    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("years of work")
    with pytest.raises(DemoDirError, match="refusing"):
        prepare_demo_dir(str(mine))
    assert (mine / "chapter1.tex").exists()
    demo = prepare_demo_dir(str(tmp_path / "demo"))
    (demo / "old.db").write_text("x")
    again = prepare_demo_dir(str(demo))  # a previous demo run: replaced
    assert not (again / "old.db").exists() and (again / DEMO_MARKER).exists()


def test_task_labels_are_not_rich_markup() -> None:
    from rich.console import Console

    from gateway.report.terminal import audit_table, quality_table, traffic_table

    task = {"id": "t-1", "label": "[/dim] [bold]x", "stage": "observe", "step": 0, "pin": None,
            "share_percent": 0, "student": None, "verdict": "[/]",
            "heldout": {"n": None, "agreement": None, "lower": None, "upper": None},
            "live": {"n": 0, "agreement": None, "lower": None, "upper": None},
            "comparisons": 0, "fallbacks": {"count": 0, "rate": None, "by_reason": {}},
            "latency": {"teacher_p50_ms": None, "teacher_p95_ms": None, "student_p50_ms": None,
                        "student_p95_ms": None, "student_source": None},
            "traffic": {"requests": 1, "student_share": None, "responses_api": 0},
            "tokens": {"teacher": 0, "student": 0}, "cost": {"saved_usd": None}}
    change = {"at": 0, "task": "t-1", "from_stage": "observe", "to_stage": "shadow",
              "from_share_percent": 0, "to_share_percent": 0, "version": 1,
              "actor": "admin:abc", "reason": "[/red] oops"}
    report = {"tasks": [task], "audit_log": [change]}
    out = io.StringIO()
    console = Console(file=out, width=200)
    for table in (quality_table(report), traffic_table(report), audit_table(report)):
        console.print(table)
    assert "[/dim] [bold]x" in out.getvalue() and "[/red] oops" in out.getvalue()


def test_worker_gets_no_key() -> None:
    cfg = parse_config({"server": {"api_keys_env": "GW_KEYS", "admin_keys_env": "ADM"},
                        "models": [{"name": "m", "provider": "anthropic",
                                    "api_key_env": "ANTHROPIC_API_KEY"}]})
    env = worker_env(cfg, {
        "PATH": "/bin", "HOME": "/h", "HF_HOME": "/hf", "OMP_NUM_THREADS": "1",
        "GW_KEYS": "sk-gw", "ADM": "sk-adm", "ANTHROPIC_API_KEY": "sk-ant",
        "OPENAI_API_KEY": "sk-oa", "AWS_SECRET_ACCESS_KEY": "x", "HF_API_KEY": "y",
        "DATABASE_URL": "postgres://u:p@h/db", "SLIMGATE_METRICS_KEYS": "sk-m",
    })
    assert env == {"PATH": "/bin", "HOME": "/h", "HF_HOME": "/hf", "OMP_NUM_THREADS": "1"}
    assert "sk-" not in " ".join(env.values())
    assert os.environ  # the parent's own environment is untouched


def test_worker_env_passes_hf_token_and_the_store_password_only() -> None:
    """The documented rule (docs/reliability.md #14): HF_TOKEN (gated candidate models) and
    the store's password variable are the only secrets the worker gets, and HF_TOKEN not
    when the config names it as a key."""
    cfg = parse_config({"store": {"url": "postgresql://u@db/s", "password_env": "PG_PW"}})
    env = worker_env(cfg, {"HF_TOKEN": "hf_x", "PG_PW": "pw", "HUGGING_FACE_HUB_TOKEN": "hf_y",
                           "HF_HUB_TOKEN_PATH": "/t", "TRANSFORMERS_CACHE": "/c"})
    assert env == {"HF_TOKEN": "hf_x", "PG_PW": "pw", "TRANSFORMERS_CACHE": "/c"}
    as_key = parse_config({"models": [{"name": "m", "provider": "huggingface",
                                       "api_key_env": "HF_TOKEN"}]})
    assert worker_env(as_key, {"HF_TOKEN": "hf_x"}) == {}
