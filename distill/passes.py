"""One distill pass, breadth first: every ready task's cheap student, then expensive ones.

`run_distill` discovers tasks, curates each, and trains in two phases. First every task
that is ready (`pipeline.why_train`) gets its cheapest kind — the encoder, seconds to a
minute — best expected win first. Then the tasks whose cheap kind did not pass (or does not
fit their answers) get their generative candidates, best expected win first — and a task
whose LoRA run was cut by its budget while its runs still gain gets that candidate again,
going on from its adapter (`plan.continuation_owed`); each such run
asks every `worker.slice_s` whether a cheap run now waits (a task became ready) and, if so,
stops and gives the pass back, so a new task waits at most one slice behind a long run.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from distill.curate import Curated
from distill.pipeline import (
    Progress,
    TaskOutcome,
    curate_task,
    discover_tasks,
    distill_task,
    judgeable_in,
    last_agreement,
    missing_data,
    why_train,
)
from distill.plan import continuation_owed, expensive_pending
from distill.train import Interrupt
from gateway.config import Config
from gateway.embed import SharedEmbedder
from gateway.store.catalog import TaskRecord, list_students, list_tasks
from gateway.store.db import Connection
from policies.schedule import TaskPlan, order_tasks

log = logging.getLogger("slimgate.distill")
Ready = tuple[TaskRecord, Curated, str]
Owed = tuple[TaskRecord, Curated, str | None]  # with the one candidate to run, if any


def schedule(con: Connection, cfg: Config, ready: list[Ready]) -> list[Ready]:
    """The tasks to train, highest expected win first (`policies.schedule.order_tasks`)."""
    plans = {}
    for task, curated, _ in ready:
        policy = cfg.policy.for_task(task.id, task.label)
        plans[task.id] = TaskPlan(task.id, task.kind, len(curated.train),
                                  last_agreement(con, task), policy.min_agreement)
    order = {p.task: i for i, p in enumerate(order_tasks(list(plans.values())))}
    return sorted(ready, key=lambda r: order[r[0].id])


def cheap_work_waiting(con: Connection, cfg: Config, embedder: SharedEmbedder,
                       busy: str, stop: threading.Event | None) -> Interrupt:
    """An `interrupt` for expensive runs: True at once when the worker stops, and every
    `worker.slice_s` when discovery and curation find a task (other than `busy`) ready to
    train — a new task, or one whose data grew."""
    last = time.monotonic()

    def waiting() -> bool:
        nonlocal last
        if stop is not None and stop.is_set():
            return True
        if time.monotonic() - last < cfg.worker.slice_s:
            return False
        try:
            discover_tasks(con, cfg, embedder)
            for task in list_tasks(con):
                if task.id == busy or _pinned_to_teacher(cfg, task):
                    continue
                if why_train(con, cfg, task, curate_task(con, cfg, task)):
                    log.info("task %s is ready: yielding the expensive run on %s", task.id, busy)
                    return True
            return False
        finally:
            last = time.monotonic()  # the check itself is not counted in the slice

    return waiting


def _pinned_to_teacher(cfg: Config, task: TaskRecord) -> bool:
    return cfg.policy.for_task(task.id, task.label, task.pin).pin == "teacher"


def run_distill(
    cfg: Config, *, task_id: str | None = None, progress: bool = True,
    report: Progress = log.info, stop: threading.Event | None = None,
    embedder: SharedEmbedder | None = None,
) -> list[TaskOutcome]:
    """One distill pass. `embedder` lets a long-lived caller (the worker) load MiniLM once.
    An outcome with action "interrupted" means a cheap run waits: start the next pass now."""
    from gateway.store.db import connect

    embedder = embedder or SharedEmbedder()
    con = connect(cfg.store)
    try:
        found = discover_tasks(con, cfg, embedder)
        report(f"discovered {found} tasks")
        outcomes: list[TaskOutcome] = []
        ready: list[Ready] = []
        owed: list[Owed] = []  # generative runs owed from earlier passes
        for task in list_tasks(con):
            if task_id and task.id != task_id:
                continue
            if _pinned_to_teacher(cfg, task):
                outcomes.append(TaskOutcome(task.id, task.label, "skipped", "pinned to teacher"))
                continue
            try:
                curated = curate_task(con, cfg, task)
                why = why_train(con, cfg, task, curated)
            except Exception as e:  # one task's bad data must not stop the others
                log.exception("curating task %s failed", task.id)
                outcomes.append(TaskOutcome(task.id, task.label, "skipped",
                                            f"curation failed: {e}"))
                continue
            if why is not None:
                ready.append((task, curated, why))
            elif task.stage == "observe" and expensive_pending(con, task):
                owed.append((task, curated, None))
            elif (going := continuation_owed(con, cfg, task)).candidate is not None:
                report(f"{task.id}: {going.candidate.model}'s last run was cut by the time "
                       f"budget and its runs still gain: it goes on from its adapter")
                owed.append((task, curated, going.candidate.model))
            else:
                lacking = missing_data(cfg, task, curated)
                soon = judgeable_in(cfg, task, curated, time.time()) \
                    if lacking and not list_students(con, task.id) else None
                nothing = "nothing new since the last student" + (
                    f"; {going.stopped}" if going.stopped else "")
                outcomes.append(TaskOutcome(task.id, task.label, "skipped", lacking or nothing,
                                            judgeable_in_s=soon))
        # Breadth first: every ready task's cheapest kind before any expensive run.
        expensive = list(owed)
        for task, curated, why in schedule(con, cfg, ready):
            if stop is not None and stop.is_set():
                return outcomes
            report(f"{task.id}: {why}")
            out = distill_task(con, cfg, task, curated, progress=progress, report=report,
                               embedder=embedder, phase="cheap")
            outcomes.append(out)
            if out.expensive_left:
                expensive.append((task, curated, None))
        outcomes += _expensive_runs(con, cfg, expensive, embedder=embedder, stop=stop,
                                    progress=progress, report=report)
        return outcomes
    finally:
        con.close()


def _expensive_runs(
    con: Connection, cfg: Config, tasks: list[Owed], *,
    embedder: SharedEmbedder, stop: threading.Event | None, progress: bool, report: Progress,
) -> list[TaskOutcome]:
    """Generative candidates, best expected win first; the pass ends at an interruption.
    A task owed a LoRA run that goes on (its model in `tasks`) runs that candidate only."""
    outcomes = []
    only = {t.id: model for t, _, model in tasks}
    ranked = schedule(con, cfg, [(t, c, "") for t, c, _ in tasks])
    for task, curated, _ in ranked:
        if stop is not None and stop.is_set():
            break
        interrupt = cheap_work_waiting(con, cfg, embedder, task.id, stop)
        out = distill_task(con, cfg, task, curated, progress=progress, report=report,
                           embedder=embedder, phase="expensive", interrupt=interrupt,
                           only=only[task.id])
        outcomes.append(out)
        if out.action == "interrupted":
            break
    return outcomes


def interrupted(outcomes: list[Any]) -> bool:
    """Whether a pass gave way to waiting cheap work (the next pass should start at once)."""
    return any(getattr(o, "action", None) == "interrupted" for o in outcomes)


def soonest_judgeable(outcomes: list[Any]) -> float | None:
    """The fewest seconds until a task skipped for want of data should have its first judged
    evidence (None: no such estimate): the worker's next pass need not wait longer."""
    soon = [o.judgeable_in_s for o in outcomes if getattr(o, "judgeable_in_s", None) is not None]
    return min(soon) if soon else None
