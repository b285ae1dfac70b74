"""Operator overrides: promote, roll back, pin and unpin a task, each in the audit log; rename.

Shared by the `slimgate promote|rollback|pin|unpin` commands and the `/admin/...` API,
with `task_rows`, the admin API's view of the tasks.
`actor` is "operator" from the CLI (a local shell) and "admin:<key id>" from the API, so the
audit log names which admin key acted. Plain functions over a sqlite3 connection; they
refuse what makes no sense (promoting a task that has no student) with a message saying why.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from gateway.store.catalog import TaskRecord, get_task, list_students, list_tasks
from gateway.store.db import Connection
from gateway.store.memory import memory_tracks
from gateway.store.stages import (
    StageChange,
    notify_task_change,
    set_pin,
    set_stage,
    set_student_status,
)

MAX_NAME_CHARS = 80


class OperatorError(ValueError):
    """An override that cannot be applied, with the reason."""


class BadName(OperatorError):
    """A task name an operator cannot give (empty, too long, not printable)."""


class UnknownTask(OperatorError):
    """The override names a task the store does not have."""


def _task(con: Connection, task_id: str) -> TaskRecord:
    task = get_task(con, task_id)
    if task is None:
        raise UnknownTask(f"task '{task_id}' does not exist (see `slimgate tasks`)")
    return task


def promote(
    con: Connection, task_id: str, canary_steps: list[int], reason: str = "",
    actor: str = "operator",
) -> StageChange:
    """One stage (or canary step) forward: observe → shadow → canary steps → primary."""
    task = _task(con, task_id)
    why = reason or "promoted by an operator"
    if task.stage == "observe":
        usable = [s for s in list_students(con, task_id)
                  if s.status in ("passed", "near", "rolled_back")]
        if not usable:
            raise OperatorError(f"task '{task_id}' has no student that passed (or nearly "
                                "passed) its held-out evaluation; run `slimgate distill` first")
        student = usable[-1]
        if student.status != "near":  # a near miss stays one until shadow proves it
            set_student_status(con, task_id, student.version, "passed")
        return set_stage(con, task_id, "shadow", version=student.version, actor=actor,
                         reason=why)
    _refuse_near_miss(con, task, "promoted past shadow")
    if task.stage == "shadow":
        return set_stage(con, task_id, "canary", to_step=0, actor=actor, reason=why)
    if task.stage == "canary":
        if task.step + 1 < len(canary_steps):
            return set_stage(con, task_id, "canary", to_step=task.step + 1, actor=actor,
                             reason=why)
        return set_stage(con, task_id, "primary", actor=actor, reason=why)
    raise OperatorError(f"task '{task_id}' is already primary")


def _refuse_near_miss(con: Connection, task: TaskRecord, what: str) -> None:
    """A near miss (held-out upper bound at the bar, lower bound below) serves no client
    until the gate has proven it on live traffic in shadow (docs/policies.md)."""
    student = next((s for s in list_students(con, task.id)
                    if s.version == task.student_version), None)
    if student is not None and student.status == "near":
        raise OperatorError(
            f"task '{task.id}': student v{student.version} is a near miss on its held-out "
            f"set; it cannot be {what} before shadow proves it (the gate promotes it when "
            "held-out and live agreement together pass)")


def rollback(con: Connection, task_id: str, reason: str = "",
             actor: str = "operator") -> StageChange:
    """Back to observe: the teacher serves everything again; the student is set aside."""
    task = _task(con, task_id)
    if task.stage == "observe":
        raise OperatorError(f"task '{task_id}' is in observe already")
    if task.student_version:
        set_student_status(con, task_id, task.student_version, "rolled_back")
    return set_stage(con, task_id, "observe", actor=actor,
                     reason=reason or "rolled back by an operator")


def pin(con: Connection, task_id: str, to: str, actor: str = "operator") -> None:
    """Pin to the teacher (never distilled nor routed to a student) or force the student."""
    task = _task(con, task_id)
    if to == "student" and not task.student_version:
        raise OperatorError(f"task '{task_id}' has no student to pin to; promote one first")
    if to == "student":
        _refuse_near_miss(con, task, "pinned")
    try:
        set_pin(con, task_id, to)
    except ValueError as e:
        raise OperatorError(str(e)) from None
    # Logged as a stage change so the audit log shows every override; a teacher pin also
    # takes the task back to observe.
    stage, step = ("observe", 0) if to == "teacher" else (task.stage, task.step)
    set_stage(con, task_id, stage, to_step=step, actor=actor, reason=f"pinned to the {to}")


def unpin(con: Connection, task_id: str, actor: str = "operator") -> None:
    task = _task(con, task_id)
    set_pin(con, task_id, None)
    set_stage(con, task_id, task.stage, to_step=task.step, actor=actor, reason="unpinned")


def rename(con: Connection, task_id: str, name: str, actor: str = "operator") -> TaskRecord:
    """Give a task a name of the operator's: shown wherever its label is (report, dashboard,
    `slimgate tasks`, policy matching by label) and kept across re-discovery."""
    name = " ".join(name.split())
    if not name:
        raise BadName("a task's name cannot be empty")
    if len(name) > MAX_NAME_CHARS:
        raise BadName(f"a task's name is at most {MAX_NAME_CHARS} characters, got {len(name)}")
    if not name.isprintable():
        raise BadName("a task's name must be printable text")
    task = _task(con, task_id)
    con.execute("UPDATE tasks SET label = ?, named_by = ?, updated_at = ? WHERE id = ?",
                (name, actor, time.time(), task_id))
    notify_task_change(con, task_id)
    task.label, task.named_by = name, actor
    return task


def task_rows(con: Connection) -> list[dict[str, Any]]:
    """Every task with its students' held-out summary, as the admin API shows them."""
    out = []
    memories = memory_tracks(con)
    for t in list_tasks(con):
        row = asdict(t)
        row.pop("info")
        track = memories.get(t.id)
        row["answer_memory"] = ({"stage": track.stage, "step": track.step,
                                 "answers": track.entries} if track else None)
        row["students"] = [{"version": s.version, "base_model": s.base_model, "status": s.status,
                            "heldout": {k: s.metrics.get(k) for k in
                                        ("n", "agreement", "lower", "upper", "valid_rate")}}
                           for s in list_students(con, t.id)]
        out.append(row)
    return out
