"""Who serves: stage rules, sticky canary buckets, sampled shadows and audits, sticky keys."""

from __future__ import annotations

import math
from typing import Any

import pytest

from policies.router import Route, route, route_task, sticky_key, unit_hash
from policies.settings import PolicyConfig

N = 20_000


def tolerance(p: float, n: int = N) -> float:
    return 4 * math.sqrt(p * (1 - p) / n)  # 4 sigma: a fair sampler fails 1 run in ~15 000


def at(stage: str, key: str = "k", rid: str = "r", share: float = 25.0, pin: str | None = None,
       has_student: bool = True, shadow_rate: float = 0.25, audit_rate: float = 0.1) -> Route:
    return route(stage=stage, share_percent=share, sticky_key=key, request_id=rid,
                 shadow_rate=shadow_rate, audit_rate=audit_rate, pin=pin, has_student=has_student)


def test_hash_is_stable_across_processes() -> None:
    # A fixed value: Python's hash() would change per process and split a conversation.
    assert unit_hash("conv:abc", b"sg-sticky") == 0.953885825488647
    assert unit_hash("x", b"a") != unit_hash("x", b"b")


@pytest.mark.parametrize("stage", ["observe", "shadow", "canary", "primary"])
def test_without_a_student_the_teacher_serves(stage: str) -> None:
    assert at(stage, share=100, has_student=False, shadow_rate=1) == Route("teacher")


@pytest.mark.parametrize("stage", ["observe", "shadow", "canary", "primary"])
def test_pin_teacher(stage: str) -> None:
    assert at(stage, share=100, pin="teacher", shadow_rate=1) == Route("teacher")


def test_observe_is_teacher_only() -> None:
    assert at("observe", share=100, shadow_rate=1, audit_rate=1) == Route("teacher")


def test_pin_student_serves_with_the_student_even_in_observe() -> None:
    routes = [at("observe", rid=str(i), pin="student") for i in range(N)]
    assert all(r.serve == "student" and not r.shadow for r in routes)
    assert abs(sum(r.audit for r in routes) / N - 0.1) < tolerance(0.1)


def test_shadow_samples_at_the_shadow_rate() -> None:
    routes = [at("shadow", rid=f"req-{i}") for i in range(N)]
    assert all(r.serve == "teacher" and not r.audit for r in routes)
    assert abs(sum(r.shadow for r in routes) / N - 0.25) < tolerance(0.25)


def test_canary_share_and_audits() -> None:
    routes = [at("canary", key=f"conv-{i}", rid=f"req-{i}") for i in range(N)]
    student = [r for r in routes if r.serve == "student"]
    teacher = [r for r in routes if r.serve == "teacher"]
    assert abs(len(student) / N - 0.25) < tolerance(0.25)
    assert abs(sum(r.audit for r in student) / len(student) - 0.1) < tolerance(0.1, len(student))
    assert not any(r.shadow for r in student) and not any(r.audit for r in teacher)
    # teacher-served canary traffic keeps shadowing, so each step gathers evidence fast
    assert abs(sum(r.shadow for r in teacher) / len(teacher) - 0.25) < tolerance(0.25,
                                                                                len(teacher))


def test_a_conversation_stays_on_one_backend_within_a_step() -> None:
    for i in range(200):
        serves = {at("canary", key=f"conv-{i}", rid=f"turn-{t}").serve for t in range(10)}
        assert len(serves) == 1


def test_raising_the_share_never_moves_a_conversation_back() -> None:
    keys = [f"conv-{i}" for i in range(N)]
    previous: set[str] = set()
    for share in (5, 25, 50, 100):
        on_student = {k for k in keys if at("canary", key=k, share=share).serve == "student"}
        assert previous <= on_student
        assert abs(len(on_student) / N - share / 100) < tolerance(share / 100) + 1e-9
        previous = on_student


def test_primary_serves_everything_with_the_student() -> None:
    routes = [at("primary", key=f"k{i}", rid=f"r{i}", share=0, audit_rate=0.05)
              for i in range(N)]
    assert all(r.serve == "student" for r in routes)
    assert abs(sum(r.audit for r in routes) / N - 0.05) < tolerance(0.05)


def test_unknown_stage() -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        at("ramp")


def test_route_task_takes_share_and_rates_from_the_policy() -> None:
    policy = PolicyConfig(canary_steps=[10, 60], audit_rate=1.0, primary_audit_rate=0.0,
                          shadow_rate=0.0).for_task("t")
    keys = [f"c{i}" for i in range(N)]

    def share(step: int) -> float:
        return sum(route_task(policy, stage="canary", step=step, sticky_key=k, request_id=k,
                              has_student=True).serve == "student" for k in keys) / N

    assert abs(share(0) - 0.10) < tolerance(0.10) and abs(share(1) - 0.60) < tolerance(0.60)
    assert abs(share(7) - 0.60) < tolerance(0.60)  # a step past the list stays at the last
    for k in keys[:200]:
        canary = route_task(policy, stage="canary", step=1, sticky_key=k, request_id=k,
                            has_student=True)
        primary = route_task(policy, stage="primary", step=None, sticky_key=k, request_id=k,
                             has_student=True)
        assert canary.audit == (canary.serve == "student")  # audit_rate 1.0 in canary
        assert primary == Route("student", audit=False)  # primary_audit_rate 0.0


# --- sticky keys --------------------------------------------------------------------------

def conversation(*turns: tuple[str, str], system: str = "You are terse.") -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": system}]
            + [{"role": r, "content": c} for r, c in turns]}


def test_session_header_wins_and_is_case_insensitive() -> None:
    req = conversation(("user", "hi"))
    assert sticky_key(req, {"X-Slimgate-Session": "s1"}, "conversation", "r1") == "session:s1"
    assert sticky_key(req, {"x-slimgate-session": "s1"}, "user", "r1") == "session:s1"


def test_later_turns_keep_the_conversation_key() -> None:
    first = conversation(("user", "Book a table"))
    later = conversation(("user", "Book a table"), ("assistant", "For when?"),
                         ("user", "Friday"))
    k1 = sticky_key(first, {}, "conversation", "r1")
    assert k1 == sticky_key(later, {}, "conversation", "r2") and k1.startswith("conv:")
    other = conversation(("user", "Book a table"), system="You are verbose.")
    assert sticky_key(other, {}, "conversation", "r1") != k1
    assert sticky_key(conversation(("user", "Cancel")), {}, "conversation", "r1") != k1


def test_user_mode() -> None:
    req = conversation(("user", "hi"))
    assert sticky_key({**req, "user": "u-9"}, {}, "user", "r") == "user:u-9"
    assert sticky_key({**req, "metadata": {"user_id": "u-7"}}, {}, "user", "r") == "user:u-7"
    assert sticky_key(req, {}, "user", "r").startswith("conv:")  # no user: the conversation


def test_request_mode_and_fallback() -> None:
    req = conversation(("user", "hi"))
    assert sticky_key(req, {"x-slimgate-session": "s"}, "request", "r1") == "request:r1"
    assert sticky_key({"messages": []}, {}, "conversation", "r2") == "request:r2"
    with pytest.raises(ValueError):
        sticky_key(req, {}, "session", "r")
