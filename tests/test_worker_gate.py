"""The worker's gate pass over a real store: evidence in, stage changes and audit log out."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from distill.worker import apply_gates, clean_partials
from gateway.admin import overrides
from gateway.config import parse_config
from gateway.store.catalog import StudentRecord, TaskRecord, add_student, get_task, upsert_task
from gateway.store.db import Connection, connect
from gateway.store.stages import stage_changes

POLICY = {"min_agreement": 0.8, "confidence": 0.9, "min_heldout": 10, "min_live": 10,
          "canary_steps": [10, 50], "canary_min_comparisons": 10, "canary_min_seconds": 0.0,
          "rollback_min_comparisons": 10, "rollback_min_requests": 10}


@pytest.fixture
def con(store_target: str) -> Connection:
    c = connect(store_target)
    upsert_task(c, TaskRecord(id="t-a", label="orders", kind="json"))
    return c


def config(tmp_path: Path, **policy: object):  # type: ignore[no-untyped-def]
    return parse_config({"store": {"path": str(tmp_path / "store.db")},
                         "distill": {"students_dir": str(tmp_path / "students")},
                         "policy": {**POLICY, **policy}})


def student(con: Connection, version: int = 1, agree: int = 30, n: int = 30,
            status: str = "passed") -> None:
    add_student(con, StudentRecord(task="t-a", version=version, path=f"t-a/v{version}",
                                   base_model="scratch:tiny", status=status,
                                   metrics={"n": n, "agree": agree}))


def comparisons(con: Connection, n: int, agree: bool, version: int = 1,
                now: float | None = None) -> None:
    now = time.time() if now is None else now
    con.executemany(
        "INSERT INTO comparisons (created_at, task, version, mode, request_id, score, agree, "
        "valid, detail) VALUES (?, 't-a', ?, 'shadow', ?, 1, ?, 1, '')",
        [(now, version, f"r{i}", int(agree)) for i in range(n)],
    )


def served(con: Connection, n: int, fallback: str | None = None) -> None:
    now = time.time()
    con.executemany(
        "INSERT INTO exchanges (request_id, created_at, endpoint, model, backend, task, stream, "
        "status, latency_ms, student_version, fallback) VALUES (?, ?, 'chat/completions', 'm', "
        "?, 't-a', 0, 200, 50, 1, ?)",
        [(f"x{i}", now, "teacher" if fallback else "student", fallback) for i in range(n)],
    )


def test_a_good_student_walks_every_stage_to_primary(
    tmp_path: Path, con: Connection
) -> None:
    cfg = config(tmp_path)
    assert apply_gates(con, cfg) == []  # no student yet: hold
    student(con)
    [change] = apply_gates(con, cfg)
    assert (change.from_stage, change.to_stage, change.version) == ("observe", "shadow", 1)
    assert apply_gates(con, cfg) == []  # shadow needs live comparisons
    walked = []
    clock = time.time()
    for _ in range(3):  # each step counts only the evidence gathered since it began
        clock += 10
        comparisons(con, 12, agree=True, now=clock)
        walked += [(c.to_stage, c.to_step) for c in apply_gates(con, cfg, now=clock + 1)]
    assert walked == [("canary", 0), ("canary", 1), ("primary", 0)]
    log = stage_changes(con, "t-a")
    assert [c.actor for c in log] == ["policy"] * 4
    assert "held-out agreement" in log[0].reason and log[0].evidence["heldout_n"] == 30


def test_failed_heldout_keeps_the_task_with_the_teacher(
    tmp_path: Path, con: Connection
) -> None:
    student(con, agree=12, n=30, status="failed")
    assert apply_gates(con, config(tmp_path)) == []
    assert get_task(con, "t-a").stage == "observe"  # type: ignore[union-attr]


def test_regression_after_promotion_rolls_back(tmp_path: Path, con: Connection) -> None:
    cfg = config(tmp_path)
    student(con)
    apply_gates(con, cfg)
    con.execute("UPDATE tasks SET stage = 'primary', stage_since = ? WHERE id = 't-a'",
                (time.time() - 5,))
    comparisons(con, 15, agree=False)
    [change] = apply_gates(con, cfg)
    assert change.to_stage == "observe" and "upper bound" in change.reason
    status = con.execute("SELECT status FROM students WHERE task = 't-a'").fetchone()[0]
    assert status == "rolled_back"
    assert apply_gates(con, cfg) == []  # a rolled-back student is not promoted again


def test_fallbacks_roll_back_a_canary(tmp_path: Path, con: Connection) -> None:
    cfg = config(tmp_path)
    student(con)
    apply_gates(con, cfg)
    con.execute("UPDATE tasks SET stage = 'canary', step = 0, stage_since = ? WHERE id = 't-a'",
                (time.time() - 5,))
    served(con, 8)
    served(con, 6, fallback="invalid_json")
    [change] = apply_gates(con, cfg)
    assert change.to_stage == "observe" and "fallback rate" in change.reason


def test_operator_overrides_are_audited(tmp_path: Path, con: Connection) -> None:
    with pytest.raises(overrides.OperatorError, match="no student"):
        overrides.promote(con, "t-a", [10, 50])
    student(con)
    overrides.promote(con, "t-a", [10, 50])
    overrides.promote(con, "t-a", [10, 50])
    assert get_task(con, "t-a").stage == "canary"  # type: ignore[union-attr]
    overrides.pin(con, "t-a", "teacher")
    assert get_task(con, "t-a").stage == "observe"  # type: ignore[union-attr]
    assert apply_gates(con, config(tmp_path)) == []  # pinned: the gate leaves it alone
    overrides.unpin(con, "t-a")
    log = stage_changes(con, "t-a")
    assert [c.actor for c in log] == ["operator"] * 4
    assert [c.reason for c in log][-2:] == ["pinned to the teacher", "unpinned"]
    with pytest.raises(overrides.OperatorError, match="does not exist"):
        overrides.rollback(con, "../etc")


def test_half_trained_students_are_cleaned(tmp_path: Path) -> None:
    partial = tmp_path / "students" / "t-a" / ".v3.partial"
    partial.mkdir(parents=True)
    (partial / "model.safetensors").write_bytes(b"half")
    headless = tmp_path / "students" / "t-a" / "v2"  # files but no slimgate.json
    headless.mkdir()
    complete = tmp_path / "students" / "t-a" / "v1"
    complete.mkdir()
    (complete / "slimgate.json").write_text("{}")
    assert clean_partials(str(tmp_path / "students")) == 2
    assert not partial.exists() and not headless.exists() and complete.exists()
