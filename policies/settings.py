"""The `[policy]` config table: rollout gates, stage rates, rollback triggers, per-task overrides.

`PolicyConfig` is strict (unknown keys fail at load); `PolicyConfig.for_task` resolves the
first matching `[[policy.tasks]]` entry over the defaults into a flat `TaskPolicy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _check_steps(steps: list[int]) -> list[int]:
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise ValueError(f"canary_steps must be strictly increasing, got {steps}")
    return steps


Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Agreement = Annotated[float, Field(gt=0.0, le=1.0)]
Confidence = Annotated[float, Field(gt=0.0, lt=1.0)]
Count = Annotated[int, Field(ge=1)]
Steps = Annotated[list[Annotated[int, Field(ge=1, le=99)]], AfterValidator(_check_steps)]
Seconds = Annotated[float, Field(ge=0.0)]
Millis = Annotated[float, Field(gt=0.0)]
Growth = Annotated[float, Field(gt=0.0)]
Sticky = Literal["conversation", "user", "request"]
Pin = Literal["teacher", "student"]
PINS: tuple[Pin, ...] = ("teacher", "student")  # operator pins; docs/policies.md
TextJudge = Literal["embedding", "teacher"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Tunables(_Strict):
    """Every key that `[[policy.tasks]]` may override; None there means "inherit"."""

    # gate: leaving observe and shadow, and each canary step
    min_agreement: Agreement | None = None  # lower confidence bound of agreement to promote
    confidence: Confidence | None = None  # two-sided confidence of the Wilson bounds
    min_heldout: Count | None = None  # held-out comparisons to pass (fewer: a near miss at most)
    min_live: Count | None = None  # live comparisons at shadow's first look (then 2x, 4x, ...)
    # stages: how much traffic each stage sends where
    shadow_rate: Rate | None = None  # share of teacher-served requests the student also answers
    canary_steps: Steps | None = None  # student share per canary step, percent; [] = no canary
    canary_min_comparisons: Count | None = None  # live comparisons needed per canary step
    canary_min_seconds: Seconds | None = None  # time each canary step lasts at least
    audit_rate: Rate | None = None  # share of student-served requests the teacher checks (canary)
    primary_audit_rate: Rate | None = None  # same in primary and for tasks pinned to the student
    # rollback: any one trigger sends the task back to observe
    max_fallback_rate: Rate | None = None  # student answers replaced by the teacher (contract)
    max_error_rate: Rate | None = None  # student calls that failed (crash, timeout)
    max_p95_latency_ms: Millis | None = None  # p95 latency of student-served requests
    rollback_min_comparisons: Count | None = None  # live comparisons before agreement can roll back
    rollback_min_requests: Count | None = None  # student-served requests before rate triggers
    # retrain
    retrain_growth: Growth | None = None  # retrain when clean data grew by this fraction
    retrain_on_drift: bool | None = None  # retrain when live agreement fails but held-out passed
    # routing
    sticky: Sticky | None = None  # what keeps requests on one backend within a canary step
    answer_memory: bool | None = None  # serve the teacher's answer again to exact repeats
    # free text: how a student's text is compared with the teacher's (docs/policies.md)
    text_judge: TextJudge | None = None  # embedding cosine, or the teacher judging (rubric)
    text_judge_rate: Rate | None = None  # share of live free-text comparisons judged
    text_judge_heldout_max: Count | None = None  # judge calls per held-out evaluation at most


class TaskOverride(_Tunables):
    """One `[[policy.tasks]]` entry; the first entry whose `match` fits a task wins."""

    match: str = Field(min_length=1)  # task id, or fnmatch glob on the task id or label
    pin: Pin | None = None  # teacher: never distilled nor routed; student: forced, no gates
    record: bool = True  # false: the task's traffic is not recorded

    def matches(self, task_id: str, label: str = "") -> bool:
        return fnmatchcase(task_id, self.match) or bool(label and fnmatchcase(label, self.match))


class PolicyConfig(_Strict):
    """The `[policy]` table; see docs/policies.md for what each gate and trigger means."""

    min_agreement: Agreement = 0.9  # lower confidence bound of agreement to promote
    confidence: Confidence = 0.95  # two-sided confidence of the Wilson bounds
    min_heldout: Count = 30  # held-out comparisons to pass (fewer: a near miss at most)
    min_live: Count = 50  # live comparisons at shadow's first look (then 2x, 4x, ...)
    # Shadow costs clients nothing and the teacher nothing: only the student's own compute,
    # bounded by students.shadow_concurrency (excess jobs are dropped and counted). At 0.25
    # a student at 0.95 waited 3-7 minutes in shadow on the loop benchmark (docs/policies.md).
    shadow_rate: Rate = 1.0  # share of teacher-served requests the student also answers
    canary_steps: Steps = [5, 25, 50]  # student share per canary step, percent; [] = no canary
    canary_min_comparisons: Count = 30  # live comparisons needed per canary step
    canary_min_seconds: Seconds = 60.0  # time each canary step lasts at least
    audit_rate: Rate = 0.1  # share of student-served requests the teacher checks (canary)
    primary_audit_rate: Rate = 0.05  # same in primary and for tasks pinned to the student
    max_fallback_rate: Rate = 0.1  # student answers replaced by the teacher (contract)
    max_error_rate: Rate = 0.05  # student calls that failed (crash, timeout)
    max_p95_latency_ms: Millis = 5000.0  # p95 latency of student-served requests
    rollback_min_comparisons: Count = 10  # live comparisons before agreement can roll back
    rollback_min_requests: Count = 20  # student-served requests before rate triggers
    retrain_growth: Growth = 0.5  # retrain when clean data grew by this fraction
    retrain_on_drift: bool = True  # retrain when live agreement fails but held-out passed
    sticky: Sticky = "conversation"  # what keeps requests on one backend within a canary step
    # Structured tasks only, gated like a student (docs/policies.md, "The answer memory").
    answer_memory: bool = True  # serve the teacher's answer again to exact repeats
    text_judge: TextJudge = "embedding"  # embedding cosine, or the teacher judging (rubric)
    text_judge_rate: Rate = 0.25  # share of live free-text comparisons judged (the rest: none)
    text_judge_heldout_max: Count = 200  # judge calls per held-out evaluation at most
    text_judge_model: str | None = None  # a configured model that judges; None: the teacher
    text_judge_timeout_s: Annotated[float, Field(gt=0.0)] = 30.0  # per judge call
    text_judge_concurrency: Count = 4  # judge calls in flight at once (worker, per evaluation)
    tasks: list[TaskOverride] = []  # per-task overrides, first match wins

    def override_for(self, task_id: str, label: str = "") -> TaskOverride | None:
        """The first `[[policy.tasks]]` entry matching the task id or its label."""
        return next((t for t in self.tasks if t.matches(task_id, label)), None)

    def for_task(self, task_id: str, label: str = "", pin: str | None = None) -> TaskPolicy:
        """Every setting resolved for one task: its override's keys over the defaults, and an
        operator's `pin` (stored with the task) over the file's."""
        values: dict[str, Any] = {name: getattr(self, name) for name in _TUNABLE}
        override = self.override_for(task_id, label)
        if override is not None:
            for name in _TUNABLE:
                value = getattr(override, name)
                if value is not None:
                    values[name] = value
            values.update(pin=override.pin, record=override.record, matched=override.match)
        if pin is not None:
            values["pin"] = pin
        values["canary_steps"] = tuple(values["canary_steps"])
        return TaskPolicy(**values)


_TUNABLE = tuple(_Tunables.model_fields)


@dataclass(frozen=True, slots=True)
class TaskPolicy:
    """The policy of one task with nothing left to inherit (see PolicyConfig for meanings)."""

    min_agreement: float
    confidence: float
    min_heldout: int
    min_live: int
    shadow_rate: float
    canary_steps: tuple[int, ...]
    canary_min_comparisons: int
    canary_min_seconds: float
    audit_rate: float
    primary_audit_rate: float
    max_fallback_rate: float
    max_error_rate: float
    max_p95_latency_ms: float
    rollback_min_comparisons: int
    rollback_min_requests: int
    retrain_growth: float
    retrain_on_drift: bool
    sticky: Sticky
    answer_memory: bool = True
    text_judge: TextJudge = "embedding"
    text_judge_rate: float = 0.25
    text_judge_heldout_max: int = 200
    pin: Pin | None = None
    record: bool = True
    matched: str | None = None  # the `match` of the override applied, for logs
