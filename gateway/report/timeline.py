"""A task's stages over a report's window: segments from the audit log, and each change.

Read by `gateway/report/data.py`; `share_percent` is the student's share a stage gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.store.catalog import TaskRecord
from gateway.store.stages import StageChange
from policies.router import student_share


def share_percent(stage: str, step: int, steps: Sequence[int], pin: str | None = None) -> int:
    """The share of a task's requests its student serves at a stage (and canary step)."""
    return int(student_share(stage, step, steps, pin))


def timeline(
    task: TaskRecord, changes: list[StageChange], start: float, end: float, steps: Sequence[int]
) -> dict[str, Any]:
    """Stage segments from the audit log, clipped to [start, end], and the changes within."""
    first = (changes[0].from_stage, changes[0].from_step, None) if changes else (
        task.stage, task.step, task.student_version)
    points = [(task.created_at or start, *first)]
    points += [(c.at, c.to_stage, c.to_step, c.version) for c in changes]
    segments = []
    for i, (at, stage, step, version) in enumerate(points):
        seg_end = points[i + 1][0] if i + 1 < len(points) else end
        if seg_end > start and at < end:
            segments.append({"stage": stage, "step": step, "version": version,
                             "share_percent": share_percent(stage, step, steps),
                             "start": max(at, start), "end": min(seg_end, end)})
    events = [change_row(c, steps) for c in changes if start <= c.at <= end]
    return {"segments": segments, "events": events}


def change_row(c: StageChange, steps: Sequence[int]) -> dict[str, Any]:
    return {
        "seq": c.seq, "at": c.at, "task": c.task, "from_stage": c.from_stage,
        "from_step": c.from_step, "from_share_percent": share_percent(c.from_stage, c.from_step,
                                                                      steps),
        "to_stage": c.to_stage, "to_step": c.to_step,
        "to_share_percent": share_percent(c.to_stage, c.to_step, steps),
        "version": c.version, "actor": c.actor, "reason": c.reason, "evidence": c.evidence,
    }
