"""Near misses through the worker's gate over a real store: a student whose held-out upper
bound reaches the bar shadows, and leaves shadow only on held-out + live evidence pooled."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from distill.worker import apply_gates
from gateway.admin import overrides
from gateway.config import parse_config
from gateway.store.catalog import StudentRecord, TaskRecord, add_student, get_task, upsert_task
from gateway.store.db import Connection, connect

# The defaults that matter here: bar 0.90 at 95%, min_heldout 30, min_live 50.
POLICY = {"canary_steps": [5, 25], "canary_min_seconds": 0.0}


@pytest.fixture
def con(store_target: str) -> Connection:
    c = connect(store_target)
    for task in ("t-a", "t-b"):
        upsert_task(c, TaskRecord(id=task, label=task, kind="json"))
    return c


def config(tmp_path: Path):  # type: ignore[no-untyped-def]
    return parse_config({"store": {"path": str(tmp_path / "store.db")},
                         "distill": {"students_dir": str(tmp_path / "students")},
                         "policy": POLICY})


def student(con: Connection, task: str, agree: int, n: int, status: str) -> None:
    add_student(con, StudentRecord(task=task, version=1, path=f"{task}/v1",
                                   base_model="encoder", status=status,
                                   metrics={"n": n, "agree": agree}))


def compare(con: Connection, agree: list[bool], now: float, task: str = "t-a") -> None:
    """Live comparisons, recorded in this order."""
    start = con.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0]
    con.executemany(
        "INSERT INTO comparisons (created_at, task, version, mode, request_id, score, agree, "
        "valid, detail) VALUES (?, ?, 1, 'shadow', ?, 1, ?, 1, '')",
        [(now, task, f"r{start + i}", int(a)) for i, a in enumerate(agree)],
    )


def stage(con: Connection, task: str = "t-a") -> str:
    return get_task(con, task).stage  # type: ignore[union-attr]


def status(con: Connection, task: str = "t-a") -> str:
    return con.execute("SELECT status FROM students WHERE task = ?", (task,)).fetchone()[0]


def test_a_near_miss_shadows_and_reaches_canary_once_pooled_evidence_passes(
    tmp_path: Path, con: Connection
) -> None:
    cfg = config(tmp_path)
    student(con, "t-a", 39, 42, "near")  # 0.93 [0.81, 0.98]: thrown away before
    student(con, "t-b", 33, 42, "failed")  # 0.79 [0.64, 0.88]: far below the bar
    [change] = apply_gates(con, cfg)
    assert (change.task, change.to_stage) == ("t-a", "shadow") and "near miss" in change.reason
    assert stage(con, "t-b") == "observe"
    t0 = time.time()
    compare(con, [True] * 50, t0 + 1)  # look 1: pooled 89/92 at 97.5% → 0.896
    assert apply_gates(con, cfg, now=t0 + 2) == []
    compare(con, [True] * 45, t0 + 3)  # 95 live, all agreeing: no look until 100
    assert apply_gates(con, cfg, now=t0 + 4) == [] and stage(con) == "shadow"
    assert status(con) == "near"
    compare(con, [False, True, True, False, True], t0 + 5)  # 98 of the first 100
    [change] = apply_gates(con, cfg, now=t0 + 6)
    assert (change.to_stage, change.to_step) == ("canary", 0)
    assert change.evidence["look"] == 2 and change.evidence["pooled_n"] == 142
    assert status(con) == "passed"  # proven live: it may serve clients now
    assert stage(con, "t-b") == "observe"


def test_a_near_miss_that_disagrees_live_is_rolled_back(
    tmp_path: Path, con: Connection
) -> None:
    cfg = config(tmp_path)
    student(con, "t-a", 39, 42, "near")
    apply_gates(con, cfg)
    t0 = time.time()
    compare(con, [True, False] * 10, t0 + 1)  # 0.50 [0.30, 0.70]: upper bound < 0.90
    [change] = apply_gates(con, cfg, now=t0 + 2)
    assert change.to_stage == "observe" and "upper bound" in change.reason
    assert status(con) == "rolled_back"
    assert apply_gates(con, cfg, now=t0 + 3) == []  # not taken into shadow again


def test_operators_cannot_put_a_near_miss_in_front_of_clients(
    tmp_path: Path, con: Connection
) -> None:
    student(con, "t-a", 39, 42, "near")
    overrides.promote(con, "t-a", [5, 25])  # observe → shadow is allowed: free for clients
    assert stage(con) == "shadow" and status(con) == "near"
    with pytest.raises(overrides.OperatorError, match="near miss"):
        overrides.promote(con, "t-a", [5, 25])
    with pytest.raises(overrides.OperatorError, match="near miss"):
        overrides.pin(con, "t-a", "student")
    assert stage(con) == "shadow"


def test_a_better_successor_takes_the_near_miss_place_in_shadow(
    tmp_path: Path, con: Connection
) -> None:
    cfg = config(tmp_path)
    student(con, "t-a", 39, 42, "near")
    con.execute("UPDATE students SET metrics = ? WHERE task = 't-a'",
                ('{"n": 42, "agree": 39, "lower": 0.81}',))
    apply_gates(con, cfg)
    assert stage(con) == "shadow"
    add_student(con, StudentRecord(task="t-a", version=2, path="t-a/v2", base_model="encoder",
                                   status="near", metrics={"n": 40, "agree": 36,
                                                           "lower": 0.77}))
    assert apply_gates(con, cfg) == []  # judged worse: the near miss stays
    add_student(con, StudentRecord(task="t-a", version=3, path="t-a/v3", base_model="encoder",
                                   status="passed", metrics={"n": 200, "agree": 196,
                                                             "lower": 0.95}))
    [change] = apply_gates(con, cfg)
    assert (change.to_stage, change.version) == ("shadow", 3) and "replaces" in change.reason
    assert get_task(con, "t-a").student_version == 3  # type: ignore[union-attr]
    states = dict(con.execute("SELECT version, status FROM students WHERE task = 't-a'"))
    assert states == {1: "superseded", 2: "near", 3: "passed"}
