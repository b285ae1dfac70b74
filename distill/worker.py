"""The loop that makes slimgate automatic: discover, (re)train, and apply the gate.

Two threads in one process: the gate thread reads every task's evidence every
`worker.gate_interval_s` and promotes, holds or rolls back (so a regression is acted on
within seconds even while a model trains); the main thread discovers tasks and trains
students every `worker.interval_s`. `slimgate serve` runs it as a subprocess;
`slimgate worker` runs it alone, e.g. on a GPU machine sharing the store. Of several
workers on one store, one leads (gateway/store/leader.py); the others stand by.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

from gateway.config import Config
from gateway.store.catalog import StudentRecord, TaskRecord, list_students, list_tasks
from gateway.store.db import Connection, connect
from gateway.store.leader import LeaderLock, leader_lock, whoami
from gateway.store.retention import maintain
from gateway.store.stages import (
    StageChange,
    live_evidence,
    pooled_prefix,
    set_stage,
    set_student_status,
)
from policies.gate import Evidence, TaskState, decide, replaces_in_shadow
from policies.schedule import next_pass_wait
from policies.stages import POOLED_STAGES, as_stage

log = logging.getLogger("slimgate.worker")
# Request texts whose vectors the worker's embedder keeps: the sampled requests of every
# task (distill/task_split.py SAMPLE each) with room to spare.
EMBED_CACHE = 50_000
GATEABLE = ("passed", "near")  # held-out verdicts the gate may take into shadow


def _candidate(task: TaskRecord, students: list[StudentRecord]) -> StudentRecord | None:
    """The student the gate judges: the one in play, else the newest that passed or nearly
    passed (a near miss proves itself in shadow)."""
    if task.student_version and task.stage != "observe":
        return next((s for s in students if s.version == task.student_version), None)
    usable = [s for s in students if s.status in GATEABLE]
    return usable[-1] if usable else None


def _successor_in_shadow(task: TaskRecord, current: StudentRecord | None,
                         students: list[StudentRecord]) -> StudentRecord | None:
    """A newer student that takes the near miss's place in shadow (`replaces_in_shadow`)."""
    if task.stage != "shadow" or current is None or task.pin:
        return None
    newer = [s for s in students if s.version > current.version and s.status in GATEABLE]
    if not newer:
        return None
    best = newer[-1]
    lower = float(current.metrics.get("lower", 0.0))
    return best if replaces_in_shadow((current.status, lower),
                                      (best.status, float(best.metrics.get("lower", 0.0)))) \
        else None


def swap_in_shadow(con: Connection, task: TaskRecord, current: StudentRecord | None,
                   successor: StudentRecord, now: float) -> StageChange:
    """Shadow starts afresh with the successor; the near miss it replaces is superseded."""
    old = current.version if current else None
    lower = float(successor.metrics.get("lower", 0.0))
    reason = (f"v{successor.version} ({successor.status}, held-out lower bound {lower:.2f}) "
              f"replaces the near miss v{old} in shadow")
    if current is not None:
        set_student_status(con, task.id, current.version, "superseded")
    change = set_stage(con, task.id, "shadow", to_step=0, version=successor.version,
                       actor="policy", reason=reason, evidence={"replaced": old}, now=now)
    log.info("task %s: %s", task.id, reason)
    return change


def gate_task(
    con: Connection, cfg: Config, task: TaskRecord, now: float
) -> StageChange | None:
    """Apply the policy gate to one task; writes and returns the change, if any."""
    policy = cfg.policy.for_task(task.id, task.label, task.pin)
    students = list_students(con, task.id)
    student = _candidate(task, students)
    swap = _successor_in_shadow(task, student, students)
    if swap is not None:
        return swap_in_shadow(con, task, student, swap, now)
    since = task.stage_since or task.created_at
    heldout = student.metrics if student else {}
    live: dict[str, Any] = {}
    prefix: tuple[int, ...] = ()
    if student is not None and task.stage != "observe":
        live = live_evidence(con, task.id, student.version, since)
        if task.stage in POOLED_STAGES:
            prefix = pooled_prefix(con, task.id, student.version, task.stage, since,
                                   live["live_n"], policy.min_live)
    state = TaskState(
        stage=as_stage(task.stage),
        step=task.step if task.stage == "canary" else None,
        stage_since=since,
        student_version=student.version if student else None,
        heldout_passed=(student.status == "passed") if student else None,
        near_miss=student is not None and student.status == "near",
    )
    evidence = Evidence(
        heldout_n=int(heldout.get("n", 0)), heldout_agree=int(heldout.get("agree", 0)),
        live_n=live.get("live_n", 0), live_agree=live.get("live_agree", 0),
        student_served=live.get("student_served", 0), fallbacks=live.get("fallbacks", 0),
        student_errors=live.get("student_errors", 0), student_p95_ms=live.get("student_p95_ms"),
        live_prefix_agree=prefix,
    )
    verdict = decide(state, evidence, policy, now)
    if verdict.action == "hold":
        return None
    if verdict.action == "rollback" and student is not None and not task.pin:
        set_student_status(con, task.id, student.version, "rolled_back")
    if (verdict.action == "promote" and task.stage == "shadow" and student is not None
            and student.status == "near"):
        # Proven on live traffic: only now may it serve clients (the gateway never routes
        # client traffic to a student whose status is still "near").
        set_student_status(con, task.id, student.version, "passed")
    change = set_stage(
        con, task.id, verdict.to_stage, to_step=verdict.to_step or 0,
        version=student.version if student else None, actor="policy", reason=verdict.reason,
        evidence=verdict.evidence, now=now,
    )
    log.info("task %s: %s", task.id, verdict.reason)
    return change


def apply_gates(
    con: Connection, cfg: Config, now: float | None = None
) -> list[StageChange]:
    now = time.time() if now is None else now
    changes = []
    for task in list_tasks(con):
        try:
            change = gate_task(con, cfg, task, now)
        except Exception:
            log.exception("gate failed for task %s", task.id)
            continue
        if change is not None:
            changes.append(change)
    return changes


_VERSION_DIR = re.compile(r"v[0-9]+")
_PARTIAL_DIR = re.compile(r"\.v[0-9]+\.partial")


def clean_partials(students_dir: str) -> int:
    """Remove versions left half-trained by a killed worker (they were never registered), and
    any version directory without its metadata (left by an older slimgate).

    Only `<root>/<task>/.v<N>.partial` and `<root>/<task>/v<N>` directories qualify: no
    symbolic link is followed (a linked task or version directory is left alone), and each
    candidate must resolve to exactly two levels under the resolved root.
    """
    root = Path(students_dir).resolve()
    if not root.is_dir():
        return 0
    removed = 0
    for task in os.scandir(root):
        if task.is_symlink() or not task.is_dir(follow_symlinks=False):
            continue
        for entry in os.scandir(task.path):
            if entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
                continue
            path = Path(entry.path)
            orphan = _VERSION_DIR.fullmatch(entry.name) and not (path / "slimgate.json").exists()
            if not (_PARTIAL_DIR.fullmatch(entry.name) or orphan):
                continue
            if path.resolve().parent.parent != root:
                continue
            shutil.rmtree(path, ignore_errors=True)  # removes links inside, never their targets
            removed += 1
    return removed


MAINTAIN_EVERY_S = 3600.0  # partitions ahead and retention: hourly is ample for daily units


def _gate_loop(cfg: Config, stop: threading.Event, lock: LeaderLock) -> None:
    """Gate students and answer memories (and maintain the store) while this worker leads; a
    standby only waits."""
    from distill.memory import MemoryBook, memory_tick

    con: Connection | None = None
    maintained = 0.0
    book = MemoryBook()  # the answer memory as this worker knows it (rebuilt on start)
    try:
        while not stop.is_set():
            try:
                if lock.held and lock.check():  # a standby, or a leader that lost it, waits
                    con = con or connect(cfg.store)
                    apply_gates(con, cfg)
                    memory_tick(con, cfg, book)
                    if time.time() - maintained >= MAINTAIN_EVERY_S:
                        maintained = time.time()
                        try:
                            maintain(con, cfg.store.retention_days)
                        except Exception:
                            log.exception("store maintenance failed")
                else:
                    book = MemoryBook()  # another leader may write meanwhile: read it afresh
            except Exception:
                log.exception("gate pass failed")
            stop.wait(cfg.worker.gate_interval_s)
    finally:
        if con is not None:
            con.close()


class Leadership:
    """Whether this worker leads: takes the lead when it is free, re-checks it before each
    cycle, and logs each change once (who leads, when standing by)."""

    def __init__(self, cfg: Config, lock: LeaderLock) -> None:
        self._cfg = cfg
        self.lock = lock
        self._told: str | None = None  # the last leader we logged, to log changes only

    def lead(self) -> bool:
        if self.lock.held:
            if self.lock.check():
                return True
            log.warning("this worker (%s) lost the lead; standing by", whoami())
            self._told = None
        try:
            got = self.lock.try_acquire()
        except Exception as e:  # the store is unreachable: stand by and try again
            if self._told != "unreachable":  # once per outage, not once per poll
                log.warning("could not try for the lead (%s: %s); retrying every %ss",
                            type(e).__name__, e, self._cfg.worker.standby_poll_s)
                self._told = "unreachable"
            return False
        if got:
            log.info("this worker (%s) leads", whoami())
            self._told = whoami()
            # Only the leader cleans: a standby would remove the leader's training in progress.
            if removed := clean_partials(self._cfg.distill.students_dir):
                log.info("removed %d half-trained student(s) left by an interrupted run",
                         removed)
            return True
        try:
            holder = self.lock.holder() or "another worker"
        except Exception:
            holder = "another worker"
        if holder != self._told:
            log.info("this worker (%s) stands by: %s leads", whoami(), holder)
            self._told = holder
        return False


def _limit_threads(threads: int) -> None:
    """Leave a core to the gateway: on a small machine two busy torch pools thrash."""
    import os

    import torch

    torch.set_num_threads(threads or max(1, (os.cpu_count() or 2) - 1))


def _watch_parent(parent_pid: int, stop: threading.Event) -> None:
    """Stop when the process that started us is gone (a gateway killed with -9 included)."""
    import os

    while not stop.wait(1.0):
        if os.getppid() != parent_pid:
            log.warning("the gateway (pid %d) is gone: worker stopping", parent_pid)
            stop.set()
            # A training run does not look at `stop`; nothing it writes is visible until it
            # completes, so leaving now loses nothing but the half-trained version.
            os._exit(0)


def run_worker(
    cfg: Config, *, once: bool = False, stop: threading.Event | None = None,
    parent_pid: int | None = None,
) -> None:
    """Run until stopped (SIGTERM/SIGINT or `stop`); `once` does one distill pass and returns."""
    from distill.passes import interrupted, run_distill, soonest_judgeable
    from gateway.embed import SharedEmbedder

    # Loaded by the first pass that discovers, kept for the rest; its cache keeps discovery
    # from embedding the same sampled requests every pass (~1.5 KB a vector: ~75 MB).
    embedder = SharedEmbedder(cache_size=EMBED_CACHE)
    _limit_threads(cfg.worker.torch_threads)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        def on_signal(*_: object) -> None:
            # Leave at once, training included: a version becomes visible only when it is
            # complete, so an interrupted one is simply removed at the next start.
            stop.set()
            raise SystemExit(0)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
    leadership = Leadership(cfg, leader_lock(cfg.store))
    if once and not leadership.lead():
        raise SystemExit(f"slimgate worker --once: {leadership.lock.holder() or 'another worker'} "
                         "leads; not running a second pass beside it")
    gate = threading.Thread(target=_gate_loop, args=(cfg, stop, leadership.lock),
                            name="slimgate-gate", daemon=True)
    gate.start()
    if parent_pid:
        threading.Thread(target=_watch_parent, args=(parent_pid, stop), daemon=True,
                         name="slimgate-parent-watch").start()
    try:
        while not stop.is_set():
            if not leadership.lead():
                stop.wait(cfg.worker.standby_poll_s)
                continue
            outcomes = []
            try:
                outcomes = run_distill(cfg, progress=False, stop=stop, embedder=embedder)
            except Exception:
                log.exception("distill pass failed")
            if once:
                break
            if not interrupted(outcomes):  # a run gave way to a ready task: no wait
                # A task about to have its first judged data is not left a whole interval.
                stop.wait(next_pass_wait(soonest_judgeable(outcomes), cfg.worker.interval_s))
    finally:
        stop.set()
        gate.join(30)
        leadership.lock.release()
