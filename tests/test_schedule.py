"""Time to first promotion: which task trains first, and when a run is given up part-way."""

from __future__ import annotations

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
    assert expected_win(zero) == 0.0 < expected_win(near)


def test_a_run_is_hopeless_only_when_its_answers_are_well_formed_and_far_from_the_gate() -> None:
    assert hopeless(agree=0, valid=32, n=32, min_agreement=0.9, confidence=0.95)
    assert not hopeless(agree=0, valid=5, n=32, min_agreement=0.9, confidence=0.95)  # learning
    assert not hopeless(agree=20, valid=32, n=32, min_agreement=0.9, confidence=0.95)
    assert not hopeless(agree=0, valid=0, n=0, min_agreement=0.9, confidence=0.95)
