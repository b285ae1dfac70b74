"""The stage machine: promotions on enough evidence, holds that say what is missing, rollbacks."""

from __future__ import annotations

import pytest

from policies.gate import Evidence, TaskState, Verdict, decide, should_retrain
from policies.settings import PolicyConfig, TaskPolicy

POLICY = PolicyConfig().for_task("t")  # 0.9 at 95%, min_heldout 30, min_live 50, steps 5/25/50
# In shadow the exit is tested at 50 and 100 live comparisons (of which 50 and 99 agreed).
GOOD = Evidence(heldout_n=100, heldout_agree=99, live_n=120, live_agree=119,
                live_prefix_agree=(50, 99))


def policy(**overrides: object) -> TaskPolicy:
    return PolicyConfig.model_validate(overrides).for_task("t")


def state(stage: str, step: int | None = None, since: float = 0.0) -> TaskState:
    return TaskState(stage=stage, step=step, stage_since=since, student_version=3,  # type: ignore[arg-type]
                     heldout_passed=True)


def test_full_walk_from_observe_to_primary() -> None:
    now, s = 1000.0, state("observe", since=0.0)
    seen = []
    for _ in range(10):
        v = decide(s, GOOD, POLICY, now)
        if v.action != "promote":
            break
        seen.append((v.to_stage, v.to_step))
        s = TaskState(v.to_stage, v.to_step, now, 3, True)
        now += 61.0  # each canary step must last canary_min_seconds
    assert seen == [("shadow", None), ("canary", 0), ("canary", 1), ("canary", 2),
                    ("primary", None)]
    assert v.action == "hold" and v.to_stage == "primary"


def test_promotion_reason_carries_the_numbers() -> None:
    v = decide(state("canary", 1), GOOD, POLICY, now=100.0)
    assert v.reason == ("held-out + live agreement 0.990 [0.952, 0.998] over 200 comparisons "
                        "(100 held-out + first 100 live; look 2 at confidence 0.9875) ≥ 0.90; "
                        "live agreement 0.99 [0.95, 1.00] over 120 comparisons at this step: "
                        "canary 25% → canary 50%")
    assert v.evidence["live_n"] == 120 and v.evidence["live_lower"] == pytest.approx(0.954, 1e-3)
    assert v.evidence["seconds_in_stage"] == 100.0 and v.evidence["min_agreement"] == 0.9


def test_observe_holds_without_a_student_or_after_a_failed_heldout() -> None:
    assert decide(TaskState("observe"), GOOD, POLICY, 0).reason == "observe: no student yet"
    failed = TaskState("observe", student_version=2, heldout_passed=False)
    v = decide(failed, GOOD, POLICY, 0)
    assert v.action == "hold" and "v2 failed its held-out evaluation" in v.reason


def test_observe_holds_on_thin_heldout_evidence() -> None:
    v = decide(state("observe"), Evidence(heldout_n=12, heldout_agree=12), POLICY, 0)
    assert v.action == "hold" and v.to_stage == "observe"
    assert "needs 30 held-out comparisons, has 12" in v.reason
    # 30 of 30 is not enough at 0.9/95%: the lower bound is 0.886
    v = decide(state("observe"), Evidence(heldout_n=30, heldout_agree=30), POLICY, 0)
    assert v.action == "hold" and "held-out lower bound 0.89 < 0.90" in v.reason
    assert decide(state("observe"), Evidence(heldout_n=35, heldout_agree=35), POLICY, 0).action \
        == "promote"


def test_shadow_holds_until_enough_live_comparisons() -> None:
    v = decide(state("shadow"), Evidence(live_n=12, live_agree=12), POLICY, 0)
    assert v.action == "hold" and "needs 50 live comparisons, has 12" in v.reason
    v = decide(state("shadow"), Evidence(live_n=60, live_agree=55, live_prefix_agree=(46,)),
               POLICY, 0)
    assert v.action == "hold" and "agreement 0.920 [0.791, 0.972] over 50 comparisons" in v.reason
    assert "< 0.90; next look at 100 live comparisons" in v.reason


def test_canary_step_lasts_its_minimum_time() -> None:
    v = decide(state("canary", 0, since=100.0), GOOD, POLICY, now=130.0)
    assert v.action == "hold" and "needs 60 s at this step, has 30 s" in v.reason
    assert decide(state("canary", 0, since=100.0), GOOD, POLICY, now=160.0).action == "promote"


def test_canary_needs_its_own_comparisons() -> None:
    v = decide(state("canary", 0), Evidence(live_n=20, live_agree=20), POLICY, now=1e6)
    assert v.action == "hold" and "needs 30 live comparisons at this step, has 20" in v.reason


def test_a_canary_step_is_judged_on_the_versions_evidence_since_shadow() -> None:
    # 30 of 30 at this step alone has a lower bound of 0.886: the step's own count is only a
    # watch; the version's looks since it entered shadow decide, so it moves on...
    pooled = Evidence(heldout_n=35, heldout_agree=35, live_n=30, live_agree=30,
                      live_prefix_agree=(50, 100))
    assert decide(state("canary", 0), pooled, POLICY, now=1e6).action == "promote"
    # ...and a version whose newest look slid under the bar holds, however good the step.
    sliding = Evidence(heldout_n=35, heldout_agree=35, live_n=30, live_agree=30,
                       live_prefix_agree=(50, 100, 170))
    v = decide(state("canary", 0), sliding, POLICY, now=1e6)
    assert v.action == "hold" and "look 3" in v.reason and "< 0.90" in v.reason


def test_no_canary_steps_goes_from_shadow_to_primary() -> None:
    v = decide(state("shadow"), GOOD, policy(canary_steps=[]), 0)
    assert (v.action, v.to_stage, v.to_step) == ("promote", "primary", None)


def rollback(ev: Evidence, stage: str = "canary", pol: TaskPolicy = POLICY) -> Verdict:
    return decide(state(stage, 1 if stage == "canary" else None), ev, pol, now=1e6)


def test_rollback_on_low_live_agreement() -> None:
    v = rollback(Evidence(live_n=40, live_agree=28))
    assert (v.action, v.to_stage, v.to_step) == ("rollback", "observe", None)
    assert v.reason == ("live agreement 0.70 [0.55, 0.82] over 40 comparisons, "
                        "upper bound 0.82 < 0.90: canary 25% → observe")


def test_low_agreement_needs_rollback_min_comparisons() -> None:
    assert rollback(Evidence(live_n=9, live_agree=0)).action == "hold"
    assert rollback(Evidence(live_n=10, live_agree=0)).action == "rollback"


def test_shadow_and_primary_roll_back_too() -> None:
    bad = Evidence(live_n=100, live_agree=60)
    assert rollback(bad, "shadow").action == "rollback"
    assert rollback(bad, "primary").to_stage == "observe"


def test_shadow_rolls_back_on_the_versions_pooled_evidence() -> None:
    """A near miss judged 31/35 held out is not dropped at 7/10 live (the live-only upper
    bound, 0.89, is under the bar; the pooled 38/45 is not); at 3/10 live it is. A serving
    stage still rolls back on the live looks alone: clients see those answers."""
    noisy = Evidence(heldout_n=35, heldout_agree=31, live_n=10, live_agree=7)
    assert rollback(noisy, "shadow").action == "hold"
    assert rollback(noisy, "canary").action == "rollback"
    v = rollback(Evidence(heldout_n=35, heldout_agree=31, live_n=10, live_agree=3), "shadow")
    assert v.action == "rollback"
    assert v.reason.startswith("held-out + live agreement 0.76 [")
    assert "over 45 comparisons" in v.reason


@pytest.mark.parametrize("ev,says", [
    (Evidence(live_n=60, live_agree=60, student_served=40, fallbacks=5), "fallback rate 0.12"),
    (Evidence(live_n=60, live_agree=60, student_served=40, student_errors=3), "error rate 0.07"),
    (Evidence(live_n=60, live_agree=60, student_served=40, student_p95_ms=7200.0),
     "student p95 latency 7200 ms over 40 requests > 5000 ms"),
])
def test_rollback_triggers_on_student_served_traffic(ev: Evidence, says: str) -> None:
    v = rollback(ev, "primary")
    assert v.action == "rollback" and says in v.reason


def test_rate_triggers_need_rollback_min_requests() -> None:
    few = Evidence(live_n=60, live_agree=60, student_served=19, fallbacks=10, student_errors=10,
                   student_p95_ms=9000.0)
    assert rollback(few, "primary").action == "hold"
    assert rollback(few, "primary", policy(rollback_min_requests=10)).action == "rollback"


def test_rollback_beats_promotion() -> None:
    ev = Evidence(live_n=120, live_agree=119, student_served=100, student_errors=50)
    assert rollback(ev).action == "rollback"


def test_a_stage_without_a_student_rolls_back() -> None:
    v = decide(TaskState("canary", 0, 0.0, None, True), GOOD, POLICY, 1e6)
    assert v.action == "rollback" and "no student" in v.reason


def test_primary_holds_when_healthy() -> None:
    v = rollback(GOOD, "primary")
    assert v.action == "hold" and v.to_stage == "primary" and "no rollback trigger" in v.reason


def test_pin_teacher_rolls_back_then_holds() -> None:
    pinned = PolicyConfig.model_validate({"tasks": [{"match": "t", "pin": "teacher"}]})
    p = pinned.for_task("t")
    v = decide(state("primary"), GOOD, p, 0)
    assert v.action == "rollback" and v.to_stage == "observe" and "pinned" in v.reason
    assert decide(state("observe"), GOOD, p, 0).action == "hold"


def test_pin_student_is_never_gated() -> None:
    p = PolicyConfig.model_validate({"tasks": [{"match": "t", "pin": "student"}]}).for_task("t")
    awful = Evidence(live_n=100, live_agree=0, student_served=100, student_errors=100)
    for s in (state("observe"), state("canary", 0)):
        v = decide(s, awful, p, 0)
        assert v.action == "hold" and v.to_stage == s.stage and "pinned to the student" in v.reason


def test_retrain_on_data_growth() -> None:
    assert should_retrain(700, 500, None, POLICY) is None
    reason = should_retrain(750, 500, None, POLICY)
    assert reason is not None and "grew 50%" in reason and "500 → 750" in reason
    assert should_retrain(750, 0, None, POLICY) is None  # never trained: not a retrain


def test_a_task_far_from_the_bar_waits_for_more_data() -> None:
    """The growth needed is divided by how close the last student came (at least the retry
    floor, 0.2): a near miss retrains at +50%, a student at 0.45 of 0.90 at +100%, one at
    0.09 at +250%."""
    assert should_retrain(750, 500, None, POLICY, last_agreement=0.93) is not None
    assert should_retrain(760, 500, None, POLICY, last_agreement=0.89) is not None
    assert should_retrain(750, 500, None, POLICY, last_agreement=0.45) is None
    reason = should_retrain(1000, 500, None, POLICY, last_agreement=0.45)
    assert reason is not None and "threshold 100%" in reason
    assert should_retrain(1700, 500, None, POLICY, last_agreement=0.09) is None
    assert should_retrain(1750, 500, None, POLICY, last_agreement=0.09) is not None
    assert should_retrain(1750, 500, None, POLICY, last_agreement=0.0) is not None


def test_retrain_on_drift() -> None:
    reason = should_retrain(500, 500, 0.82, POLICY)
    assert reason is not None and "0.82 < 0.90" in reason and "drift" in reason
    assert should_retrain(500, 500, 0.95, POLICY) is None
    assert should_retrain(500, 500, 0.82, POLICY, heldout_passed=False) is None
    assert should_retrain(500, 500, 0.82, policy(retrain_on_drift=False)) is None


def test_unknown_stage_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        decide(TaskState("ramp"), GOOD, POLICY, 0)  # type: ignore[arg-type]


def near(stage: str) -> TaskState:
    return TaskState(stage=stage, student_version=4, heldout_passed=False,  # type: ignore[arg-type]
                     near_miss=True)


def test_a_near_miss_enters_shadow_and_leaves_it_on_pooled_evidence() -> None:
    heldout = {"heldout_n": 42, "heldout_agree": 39}  # 0.93 [0.81, 0.98]: upper bound ≥ 0.90
    v = decide(near("observe"), Evidence(**heldout), POLICY, 0)
    assert (v.action, v.to_stage) == ("promote", "shadow") and "near miss" in v.reason
    # 60 live, all agreeing: look 1 (the first 50) pooled 89/92 is 0.896 < 0.90: hold.
    v = decide(near("shadow"), Evidence(**heldout, live_n=60, live_agree=60,
                                        live_prefix_agree=(50,)), POLICY, 0)
    assert v.action == "hold" and "next look at 100" in v.reason
    # Look 2: 98 of the first 100 agreed: pooled 137/142, lower 0.903 at 98.75%.
    v = decide(near("shadow"), Evidence(**heldout, live_n=130, live_agree=127,
                                        live_prefix_agree=(50, 98)), POLICY, 0)
    assert (v.action, v.to_stage, v.to_step) == ("promote", "canary", 0)
    assert "over 142 comparisons (42 held-out + first 100 live; look 2" in v.reason
    assert v.evidence["look"] == 2 and v.evidence["pooled_lower"] == pytest.approx(0.903, 1e-3)


def test_a_far_miss_stays_in_observe() -> None:
    far = TaskState("observe", student_version=4, heldout_passed=False, near_miss=True)
    v = decide(far, Evidence(heldout_n=42, heldout_agree=33), POLICY, 0)  # [0.64, 0.88]
    assert v.action == "hold" and "upper bound 0.88 < 0.90" in v.reason
