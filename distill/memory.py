"""The answer memory's worker side: learn each task's repeated answers, replay them, gate them.

Every gate tick, for each structured task, the exchanges recorded since the last scan are
read in order. A teacher answer to a request the memory does not hold yet becomes an entry;
a teacher answer to one it holds is a **replay**: exactly the comparison a shadow would have
made (the memory's answer against the teacher's fresh one), recorded as a comparison of
student version 0. A disagreement withdraws the key for good (the teacher is not consistent
on it), and so does an audit of a served memory answer that disagreed. The memory then
moves through observe → shadow → canary → primary by `policies.gate.decide`, the students'
gate, on its replayed and audited comparisons: no training, no held-out set, no new rule.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from distill.curate import drop_reason
from gateway.answer_memory import MEMORY_VERSION, memory_key
from gateway.config import Config
from gateway.store.catalog import TaskRecord, chat_exchanges, list_tasks
from gateway.store.db import Connection
from gateway.store.memory import (
    TrackRecord,
    audit_disagreements,
    memory_tracks,
    open_track,
    set_memory_stage,
    stored_entries,
    write_scan,
)
from gateway.store.stages import live_evidence, pooled_prefix
from gateway.store.texts import TextLookup, restore
from gateway.task_ids import task_tenant
from policies.compare import NotComparable, compare, texts_identical
from policies.gate import Evidence, TaskState, decide
from policies.memory import (
    MAX_ENTRIES_PER_TASK,
    MEMORY_KINDS,
    answer_memorable,
    forms_label_set,
)
from policies.settings import TaskPolicy
from policies.stages import POOLED_STAGES, as_stage

log = logging.getLogger("slimgate.memory")


@dataclass
class TaskMemory:
    """The worker's copy of one task's memory."""

    # key -> (canonical JSON, the answer, when it was learnt)
    answers: dict[str, tuple[bytes, dict[str, Any], float]] = field(default_factory=dict)
    withdrawn: set[str] = field(default_factory=set)  # keys the teacher answered otherwise
    audits_seq: int = 0  # disagreeing audits read up to this comparison seq


def _answer(message: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    answer = {k: message[k] for k in ("content", "tool_calls") if message.get(k) is not None}
    answer["role"] = "assistant"
    return orjson.dumps(answer, option=orjson.OPT_SORT_KEYS), answer


def agrees(kind: str, held: dict[str, Any], fresh: dict[str, Any],
           request: dict[str, Any]) -> tuple[bool, float, bool, str] | None:
    """The held answer judged against the teacher's fresh one as the gate judges a student
    (policies.compare); free-text parts count only when identical. None: not comparable."""
    a, b = str(held.get("content") or ""), str(fresh.get("content") or "")
    similarity = 1.0 if texts_identical(a, b) else 0.0
    try:
        result = compare(kind, held, fresh, request=request, similarity=similarity)
    except NotComparable:
        return None
    return result.agree, result.score, result.valid, result.detail


class MemoryBook:
    """Every task's memory as this worker knows it; rebuilt from the store when it starts."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskMemory] = {}

    def _memory(self, con: Connection, task: str) -> TaskMemory:
        mem = self._tasks.get(task)
        if mem is None:
            mem = TaskMemory()
            for key, (answer, at) in stored_entries(con, task).items():
                if answer is None:
                    mem.withdrawn.add(key)
                else:
                    mem.answers[key] = (*_answer(orjson.loads(answer)), at)
            self._tasks[task] = mem
        return mem

    def prune(self, cutoff: float) -> None:
        """Forget answers learnt before `cutoff` (the store's retention deletes their rows):
        the teacher's next answer to such a request is learnt afresh."""
        for mem in self._tasks.values():
            for key in [k for k, v in mem.answers.items() if v[2] < cutoff]:
                del mem.answers[key]

    def why_not(self, task: TaskRecord) -> str | None:
        """Why what this task's memory holds may not be served, or None: short answers
        that are no label set are facts (policies.memory.forms_label_set)."""
        if task.kind != "label":
            return None
        mem = self._tasks.get(task.id)
        counts = list(Counter(v[0] for v in mem.answers.values()).values()) if mem else []
        if forms_label_set(counts):
            return None
        return (f"{len(counts)} distinct answers to {sum(counts)} requests are no label set: "
                "facts the requests do not hold are never remembered")

    def scan(self, con: Connection, cfg: Config, task: TaskRecord, track: TrackRecord,
             now: float) -> int:
        """Read the task's exchanges since the last scan; returns the replays recorded."""
        mem = self._memory(con, task.id)
        tenant = task_tenant(task.info)
        added: list[tuple[str, str, str | None]] = []
        withdrawn: list[str] = []
        replays: list[tuple[Any, ...]] = []
        last = track.scanned_seq

        def withdraw(key: str) -> None:
            if key not in mem.withdrawn:
                mem.withdrawn.add(key)
                mem.answers.pop(key, None)
                withdrawn.append(key)

        for row in chat_exchanges(con, since_seq=track.scanned_seq, task=task.id):
            last = max(last, int(row["seq"]))
            if drop_reason(row) or cfg.server.task_namespace(row["key_id"]) != tenant:
                continue  # memory-served, errored, cut short, or another tenant's row
            choice = row["response"]["choices"][0]
            message = choice.get("message") or {}
            if not answer_memorable(task.kind, choice.get("finish_reason"), message):
                continue
            key = memory_key(row["request"])
            if key is None or key in mem.withdrawn:
                continue
            canon, answer = _answer(message)
            held = mem.answers.get(key)
            if held is None:
                if len(mem.answers) < MAX_ENTRIES_PER_TASK:
                    mem.answers[key] = (canon, answer, now)
                    usage = (row["response"] or {}).get("usage")
                    added.append((key, canon.decode(),
                                  orjson.dumps(usage).decode() if usage else None))
                continue
            judged = (True, 1.0, True, "identical") if canon == held[0] else \
                agrees(task.kind, held[1], answer, row["request"])
            if judged is None:
                continue
            agree, score, valid, detail = judged
            replays.append((row["created_at"], task.id, MEMORY_VERSION, "replay",
                            row["request_id"], score, int(agree), int(valid), detail,
                            held[0].decode(), canon.decode(), None, None, None, None))
            if not agree:
                withdraw(key)
        for seq, request_id in audit_disagreements(con, task.id, MEMORY_VERSION, mem.audits_seq):
            mem.audits_seq = max(mem.audits_seq, seq)
            key = _request_memory_key(con, request_id)
            if key is not None:
                withdraw(key)
        if added or withdrawn or replays or last != track.scanned_seq:
            write_scan(con, task.id, last, len(mem.answers), added, withdrawn, replays, now)
        return len(replays)


def _request_memory_key(con: Connection, request_id: str) -> str | None:
    row = con.execute("SELECT request, request_texts FROM exchanges WHERE request_id = ? "
                      "AND request IS NOT NULL ORDER BY seq DESC LIMIT 1",
                      (request_id,)).fetchone()
    if row is None:
        return None
    return memory_key(restore(orjson.loads(row["request"]), row["request_texts"],
                              TextLookup(con)))


def memory_allowed(cfg: Config, task: TaskRecord, policy: TaskPolicy) -> str | None:
    """Why this task gets no answer memory, or None."""
    if not policy.answer_memory:
        return "policy.answer_memory is off"
    if task.kind not in MEMORY_KINDS:
        return f"{task.kind} answers are never remembered"
    if cfg.store.scrub or not cfg.store.record_requests:
        return "the store keeps no raw answers to serve again (store.scrub / record_requests)"
    return None


def gate_memory(con: Connection, cfg: Config, track: TrackRecord, policy: TaskPolicy,
                now: float) -> str | None:
    """Apply the students' gate to a task's memory; returns the reason of a change, if any."""
    since = track.stage_since
    live = live_evidence(con, track.task, MEMORY_VERSION, since)
    observing = track.stage == "observe"
    prefix: tuple[int, ...] = ()
    if track.stage in POOLED_STAGES:
        prefix = pooled_prefix(con, track.task, MEMORY_VERSION, track.stage, since,
                               live["live_n"], policy.min_live, table="memory_changes")
    state = TaskState(stage=as_stage(track.stage),
                      step=track.step if track.stage == "canary" else None,
                      stage_since=since, student_version=MEMORY_VERSION)
    evidence = Evidence(
        # In observe the replays are the memory's judged evidence; after, they are live.
        heldout_n=live["live_n"] if observing else 0,
        heldout_agree=live["live_agree"] if observing else 0,
        live_n=0 if observing else live["live_n"],
        live_agree=0 if observing else live["live_agree"],
        student_served=live["student_served"], fallbacks=live["fallbacks"],
        student_errors=live["student_errors"], student_p95_ms=live["student_p95_ms"],
        live_prefix_agree=prefix,
    )
    verdict = decide(state, evidence, policy, now)
    if verdict.action == "hold":
        return None
    reason = f"answer memory ({track.entries} answers): {verdict.reason}"
    set_memory_stage(con, track, verdict.to_stage, verdict.to_step or 0, reason=reason,
                     evidence=verdict.evidence, now=now)
    log.info("task %s: %s", track.task, reason)
    return reason


def memory_tick(con: Connection, cfg: Config, book: MemoryBook,
                now: float | None = None) -> list[str]:
    """Scan and gate every task's memory once; returns the stage changes made."""
    now = time.time() if now is None else now
    if cfg.store.retention_days:
        book.prune(now - cfg.store.retention_days * 86_400.0)
    tracks = memory_tracks(con)
    changes = []
    for task in list_tasks(con):
        policy = cfg.policy.for_task(task.id, task.label, task.pin)
        track = tracks.get(task.id)
        why_not = memory_allowed(cfg, task, policy)
        if why_not is not None:
            if track is not None and track.stage != "observe":
                set_memory_stage(con, track, "observe", 0, reason=f"answer memory: {why_not}",
                                 evidence={}, now=now)
                changes.append(f"{task.id}: {why_not}")
            continue
        try:
            if track is None:
                open_track(con, task.id, since=0.0, now=now)  # its whole history is evidence
                track = memory_tracks(con)[task.id]
            book.scan(con, cfg, task, track, now)
            track = memory_tracks(con)[task.id]
            unfit = book.why_not(task)
            if unfit is not None:
                if track.stage != "observe":
                    set_memory_stage(con, track, "observe", 0, now=now, evidence={},
                                     reason=f"answer memory: {unfit}")
                    changes.append(f"{task.id}: {unfit}")
                continue
            change = gate_memory(con, cfg, track, policy, now)
        except Exception:
            log.exception("answer memory of task %s failed", task.id)
            continue
        if change:
            changes.append(f"{task.id}: {change}")
    return changes
