"""Time to first promotion: which task trains first, and when a run is given up part-way."""

from __future__ import annotations

from pathlib import Path

from policies.schedule import TaskPlan, expected_win, hopeless, order_tasks


def test_learnable_shapes_train_before_free_text_whatever_their_data() -> None:
    plans = [TaskPlan("writer", "text", 900), TaskPlan("router", "json", 200),
             TaskPlan("tools", "tool_call", 300), TaskPlan("triage", "label", 250)]
    assert [p.task for p in order_tasks(plans)] == ["triage", "tools", "router", "writer"]


def test_a_near_miss_is_retried_before_a_task_that_scored_nothing() -> None:
    near = TaskPlan("near", "json", 300, last_agreement=0.85)
    zero = TaskPlan("zero", "json", 300, last_agreement=0.0)
    fresh = TaskPlan("fresh", "json", 300)
    assert [p.task for p in order_tasks([zero, near, fresh])] == ["fresh", "near", "zero"]
    assert expected_win(TaskPlan("w", "text", 900)) < expected_win(zero) < expected_win(near)


def test_a_run_is_hopeless_only_when_its_answers_are_well_formed_and_far_from_the_gate() -> None:
    assert hopeless(agree=0, valid=32, n=32, min_agreement=0.9, confidence=0.95)
    assert not hopeless(agree=0, valid=5, n=32, min_agreement=0.9, confidence=0.95)  # learning
    assert not hopeless(agree=20, valid=32, n=32, min_agreement=0.9, confidence=0.95)
    assert not hopeless(agree=0, valid=0, n=0, min_agreement=0.9, confidence=0.95)


def test_the_pass_trains_the_label_task_first_and_a_failed_near_miss_before_a_zero(
    tmp_path: Path,
) -> None:
    from distill.curate import Curated
    from distill.passes import schedule
    from gateway.config import parse_config
    from gateway.store.catalog import StudentRecord, TaskRecord, add_student, upsert_task
    from gateway.store.db import connect

    cfg = parse_config({"store": {"path": str(tmp_path / "s.db")}})
    con = connect(cfg.store.path)
    tasks = [TaskRecord(id=i, label=i, kind=k) for i, k in
             [("writer", "text"), ("zero", "json"), ("near", "json"), ("triage", "label")]]
    for t in tasks:
        upsert_task(con, t)
    for task_id, agreement in [("zero", 0.0), ("near", 0.8)]:
        add_student(con, StudentRecord(task=task_id, version=1, path="", base_model="m",
                                       status="failed", metrics={"agreement": agreement}))
    ready = [(t, Curated(), "new data") for t in tasks]
    assert [t.id for t, _, _ in schedule(con, cfg, ready)] == ["triage", "near", "zero",
                                                               "writer"]
