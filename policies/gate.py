"""The stage machine of a task: promote, hold or roll back, from counted evidence.

observe → shadow → canary (each step) → primary, gated on the Wilson lower bound of
agreement over enough comparisons; a near miss (held-out upper bound at the bar) enters
shadow too, and shadow is left — and each canary step passed — on held-out and live evidence
pooled since the version entered shadow, tested only where live evidence doubles
(policies/sequential.py). Any later stage rolls back to observe when the
live upper bound falls below the bar, or the student falls back, fails or lags too often.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from policies.schedule import RETRY_FLOOR
from policies.sequential import Look, ShadowExit, shadow_exit
from policies.settings import TaskPolicy
from policies.stages import STAGES, Stage
from policies.stats import wilson

Action = Literal["promote", "hold", "rollback"]


@dataclass(frozen=True, slots=True)
class TaskState:
    stage: Stage
    step: int | None = None  # index into canary_steps while in canary
    stage_since: float = 0.0  # unix time the current stage (or canary step) began
    student_version: int | None = None  # the student that would serve; None = none yet
    heldout_passed: bool | None = None  # distill's own held-out verdict; None = not evaluated
    near_miss: bool = False  # held-out upper bound reached the bar, the full gate did not


@dataclass(frozen=True, slots=True)
class Evidence:
    """Counts since `stage_since`, for the current student version."""

    heldout_n: int = 0  # held-out comparisons
    heldout_agree: int = 0
    live_n: int = 0  # live comparisons: shadow + audit
    live_agree: int = 0
    student_served: int = 0  # requests the student answered for the client (or tried to)
    fallbacks: int = 0  # of those, answers replaced by the teacher (contract violations)
    student_errors: int = 0  # of those, student failures (crash, timeout)
    student_p95_ms: float | None = None  # p95 latency of student-served requests
    # In shadow and canary: agreements among the first min_live·2^k live comparisons since
    # this version entered shadow, one per checkpoint reached (policies.sequential
    # .checkpoints); shadow's exit and each canary step are tested on these looks.
    live_prefix_agree: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    to_stage: Stage
    to_step: int | None  # canary step index when to_stage is canary, else None
    reason: str  # one readable sentence with the numbers
    evidence: dict[str, Any]  # the numbers used, for the audit log


def _agreement(name: str, agree: int, n: int, bounds: tuple[float, float]) -> str:
    rate = agree / n if n else 0.0
    return f"{name} agreement {rate:.2f} [{bounds[0]:.2f}, {bounds[1]:.2f}] over {n} comparisons"


def _where(stage: str, step: int | None, policy: TaskPolicy) -> str:
    if stage != "canary":
        return stage
    steps = policy.canary_steps
    return f"canary {steps[_step(step, policy)]}%" if steps else "canary"


def _step(step: int | None, policy: TaskPolicy) -> int:
    return min(max(step or 0, 0), max(len(policy.canary_steps) - 1, 0))


def _numbers(state: TaskState, ev: Evidence, policy: TaskPolicy, now: float) -> dict[str, Any]:
    served = ev.student_served
    heldout = wilson(ev.heldout_agree, ev.heldout_n, policy.confidence)
    live = wilson(ev.live_agree, ev.live_n, policy.confidence)
    return {
        **asdict(ev),
        "heldout_lower": heldout[0], "heldout_upper": heldout[1],
        "live_lower": live[0], "live_upper": live[1],
        "fallback_rate": ev.fallbacks / served if served else 0.0,
        "error_rate": ev.student_errors / served if served else 0.0,
        "seconds_in_stage": max(0.0, now - state.stage_since),
        "min_agreement": policy.min_agreement,
        "confidence": policy.confidence,
        "student_version": state.student_version,
    }


def _rollback_trigger(stage: str, ev: Evidence, policy: TaskPolicy,
                      num: dict[str, Any]) -> str | None:
    bar = policy.min_agreement
    if ev.live_n >= policy.rollback_min_comparisons and stage == "shadow":
        # Shadow serves no client: a student leaves it on its version's whole evidence
        # (held-out + live since shadow, as its exit is judged), not on its first live
        # looks alone. A near miss judged 31/35 held out was dropped at 7/10 live (live
        # upper bound 0.89) though its pooled 38/45 still reaches the bar (loop bench,
        # SNIPS intents, 2026-12-06). Serving stages keep the live-only trigger below.
        agree, n = ev.heldout_agree + ev.live_agree, ev.heldout_n + ev.live_n
        lower, upper = wilson(agree, n, policy.confidence)
        if upper < bar:
            return (_agreement("held-out + live", agree, n, (lower, upper))
                    + f", upper bound {upper:.2f} < {bar:.2f}")
    elif ev.live_n >= policy.rollback_min_comparisons and num["live_upper"] < bar:
        return (_agreement("live", ev.live_agree, ev.live_n, (num["live_lower"], num["live_upper"]))
                + f", upper bound {num['live_upper']:.2f} < {bar:.2f}")
    served = ev.student_served
    if served < policy.rollback_min_requests:
        return None
    if num["fallback_rate"] > policy.max_fallback_rate:
        return (f"fallback rate {num['fallback_rate']:.2f} ({ev.fallbacks} of {served} "
                f"student-served) > {policy.max_fallback_rate:.2f}")
    if num["error_rate"] > policy.max_error_rate:
        return (f"error rate {num['error_rate']:.2f} ({ev.student_errors} of {served} "
                f"student-served) > {policy.max_error_rate:.2f}")
    p95 = ev.student_p95_ms
    if p95 is not None and p95 > policy.max_p95_latency_ms:
        return (f"student p95 latency {p95:.0f} ms over {served} requests "
                f"> {policy.max_p95_latency_ms:.0f} ms")
    return None


def _needs(n: int, need: int, what: str, lower: float, bar: float) -> list[str]:
    """What stands between `n` comparisons with this lower bound and the gate."""
    missing = [f"needs {need} {what} comparisons, has {n}"] if n < need else []
    if n and lower < bar:
        missing.append(f"{what} lower bound {lower:.2f} < {bar:.2f}")
    return missing


def _next(state: TaskState, policy: TaskPolicy) -> tuple[Stage, int | None]:
    steps = policy.canary_steps
    if state.stage == "observe":
        return "shadow", None
    if state.stage == "shadow":
        return ("canary", 0) if steps else ("primary", None)
    k = _step(state.step, policy)
    return ("canary", k + 1) if k + 1 < len(steps) else ("primary", None)


def decide(state: TaskState, evidence: Evidence, policy: TaskPolicy, now: float) -> Verdict:
    """Promote, hold or roll back one task; pure, so it can be re-run and audited."""
    if state.stage not in STAGES:
        raise ValueError(f"unknown stage {state.stage!r}; expected one of {STAGES}")
    num = _numbers(state, evidence, policy, now)
    here = _where(state.stage, state.step, policy)

    def verdict(action: Action, stage: Stage, step: int | None, reason: str) -> Verdict:
        if action == "hold":
            reason = f"{here}: {reason}"
        else:
            reason = f"{reason}: {here} → {_where(stage, step, policy)}"
        return Verdict(action, stage, step if stage == "canary" else None, reason, num)

    def hold(missing: list[str]) -> Verdict:
        return verdict("hold", state.stage, state.step, "; ".join(missing))

    if policy.pin == "teacher":
        if state.stage != "observe":
            return verdict("rollback", "observe", None, "task is pinned to the teacher")
        return hold(["pinned to the teacher, never distilled nor routed to a student"])
    if policy.pin == "student":
        return hold(["pinned to the student, which serves every request without gates"])
    bar = policy.min_agreement
    if state.stage == "observe":
        missing = _observe_missing(state, evidence, policy, num)
        if missing:
            return hold(missing)
        heldout = _agreement("held-out", evidence.heldout_agree, evidence.heldout_n,
                             (num["heldout_lower"], num["heldout_upper"]))
        if state.near_miss:
            return verdict("promote", "shadow", None, f"near miss: {heldout}, upper bound "
                           f"≥ {bar:.2f}; shadow (the teacher serves) proves it on live traffic")
        return verdict("promote", "shadow", None, f"{heldout} ≥ {bar:.2f}")
    if state.student_version is None:
        return verdict("rollback", "observe", None, "no student to serve")
    trigger = _rollback_trigger(state.stage, evidence, policy, num)
    if trigger:
        return verdict("rollback", "observe", None, trigger)
    live = _agreement("live", evidence.live_agree, evidence.live_n,
                      (num["live_lower"], num["live_upper"]))
    if state.stage == "primary":
        return hold([f"{live}; no rollback trigger"])
    if state.stage == "shadow":
        leave = shadow_exit(evidence.heldout_agree, evidence.heldout_n,
                            evidence.live_prefix_agree, policy.min_live, bar, policy.confidence)
        look = leave.passed or leave.last
        if look is not None:
            num.update(look=look.k + 1, look_live_n=look.live_n, look_confidence=look.confidence,
                       pooled_n=look.n, pooled_agree=look.agree, pooled_lower=look.lower,
                       pooled_upper=look.upper)
        if leave.passed is None:
            return hold(_shadow_missing(evidence, policy, leave))
        return verdict("promote", *_next(state, policy), f"{_pooled(leave.passed)} ≥ {bar:.2f}")
    # A canary step watches the student at its share (its own comparisons, its time, the
    # rollback triggers above); whether it is good enough is the version's whole evidence
    # since it entered shadow, tested at the same alpha-spent looks as shadow's exit: the
    # newest look reached must still pass, so agreement sliding below the bar holds it.
    look = shadow_exit(evidence.heldout_agree, evidence.heldout_n, evidence.live_prefix_agree,
                       policy.min_live, bar, policy.confidence).last
    missing = []
    if evidence.live_n < policy.canary_min_comparisons:
        missing.append(f"needs {policy.canary_min_comparisons} live comparisons at this step, "
                       f"has {evidence.live_n}")
    if num["seconds_in_stage"] < policy.canary_min_seconds:
        missing.append(f"needs {policy.canary_min_seconds:.0f} s at this step, "
                       f"has {num['seconds_in_stage']:.0f} s")
    if look is None:
        missing.append(f"no look at {policy.min_live} live comparisons since shadow yet")
    else:
        num.update(look=look.k + 1, look_live_n=look.live_n, look_confidence=look.confidence,
                   pooled_n=look.n, pooled_agree=look.agree, pooled_lower=look.lower,
                   pooled_upper=look.upper)
        if look.lower < bar:
            missing.append(f"{_pooled(look)} < {bar:.2f}")
    if missing:
        return hold(missing)
    assert look is not None
    return verdict("promote", *_next(state, policy),
                   f"{_pooled(look)} ≥ {bar:.2f}; {live} at this step")


def _pooled(look: Look) -> str:
    # Three decimals: at the bar, 0.896 and 0.903 must not both read 0.90.
    return (f"held-out + live agreement {look.agree / look.n:.3f} [{look.lower:.3f}, "
            f"{look.upper:.3f}] over {look.n} comparisons ({look.n - look.live_n} held-out + "
            f"first {look.live_n} live; look {look.k + 1} at confidence {look.confidence:.4f})")


def _shadow_missing(ev: Evidence, policy: TaskPolicy, leave: ShadowExit) -> list[str]:
    """What keeps a task in shadow: too few live comparisons, or no look passed yet."""
    if ev.live_n < policy.min_live:
        return [f"needs {policy.min_live} live comparisons, has {ev.live_n}"]
    if leave.last is None:
        return [f"{ev.live_n} live comparisons but no checkpoint counts for them"]
    return [f"{_pooled(leave.last)} < {policy.min_agreement:.2f}; "
            f"next look at {leave.next_at} live comparisons"]


def _observe_missing(state: TaskState, ev: Evidence, policy: TaskPolicy,
                     num: dict[str, Any]) -> list[str]:
    """What keeps a task in observe: no student, a failed held-out run, or thin evidence. A
    near miss needs only its held-out upper bound at the bar: shadow costs clients nothing."""
    if state.student_version is None:
        return ["no student yet"]
    if state.near_miss:
        if ev.heldout_n and num["heldout_upper"] >= policy.min_agreement:
            return []
        return [f"near-miss v{state.student_version}: held-out upper bound "
                f"{num['heldout_upper']:.2f} < {policy.min_agreement:.2f}"]
    if state.heldout_passed is False:
        return [f"student v{state.student_version} failed its held-out evaluation"]
    return _needs(ev.heldout_n, policy.min_heldout, "held-out", num["heldout_lower"],
                  policy.min_agreement)


def should_retrain(task_examples: int, trained_on: int, live_upper: float | None,
                   policy: TaskPolicy, *, heldout_passed: bool = True,
                   last_agreement: float | None = None) -> str | None:
    """Why the task's student should be retrained now, or None.

    Growth: the task's clean data grew by `retrain_growth` since the student was trained —
    divided by how close its last student came to the bar (`last_agreement` /
    `min_agreement`, at least RETRY_FLOOR), so a task far from the bar waits for several
    times its data: learning curves climb with the log of the data, and every retraining of
    a hopeless task holds the queue for the others. Measured on the loop benchmark (SNIPS,
    unique variant, 2-core CPU under load, 2026-12-06): the tools and JSON encoders (0.14 and
    0.03, then 0.36 and 0.18 with 4.4-5.4 times the data) took ~130 s of the worker each
    per retraining while the intent task's near miss waited for its successor (first student
    answer at 631-670 s).
    Drift: live agreement's upper bound fell below `min_agreement` although the student
    passed its held-out set, so the traffic no longer looks like what it learned from.
    """
    reasons = []
    if (policy.retrain_on_drift and heldout_passed and live_upper is not None
            and live_upper < policy.min_agreement):
        reasons.append(f"live agreement upper bound {live_upper:.2f} < "
                       f"{policy.min_agreement:.2f} while the held-out set passed (drift)")
    growth = policy.retrain_growth
    if last_agreement is not None:
        growth /= max(RETRY_FLOOR, min(1.0, last_agreement / policy.min_agreement))
    if trained_on > 0 and task_examples >= trained_on * (1.0 + growth):
        grown = task_examples / trained_on - 1.0
        reasons.append(f"clean data grew {grown:.0%} since training ({trained_on} → "
                       f"{task_examples} examples, threshold {growth:.0%})")
    return "; ".join(reasons) or None


def replaces_in_shadow(current: tuple[str, float], newer: tuple[str, float]) -> bool:
    """Whether a newer student (held-out status, lower bound) takes the place of the near miss
    now in shadow: shadow serves no client, so a better-judged successor loses nothing by
    starting its live evidence afresh. Only a near miss is replaced (a passed student in
    shadow is nearly out); the newer one must pass, or be judged with a higher lower bound."""
    status, lower = current
    new_status, new_lower = newer
    if status != "near" or new_status not in ("passed", "near"):
        return False
    return new_status == "passed" or new_lower > lower
