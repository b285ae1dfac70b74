"""Steps S2-S5 for every task: curate → discover → select → fine-tune → held-out evaluation.

`run_distill` discovers tasks in the recorded traffic, then, highest expected win first
(`policies.schedule`), for each task with enough clean data (and no student yet, or data
grown enough / drift seen) fits its copy slots, trains student kinds cheapest first
(`distill.shape`; generative candidates smallest first), evaluates each on the task's
held-out set through its copy slots and registers it. A version is trained in a
`.partial` directory and becomes visible only when complete: a kill never leaves a
half-written student behind.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from distill.candidates import Prepared
from distill.curate import Curated, curate
from distill.select import rank_candidates
from distill.shape import StudentKind
from gateway.config import CandidateConfig, Config
from gateway.embed import SharedEmbedder
from gateway.privacy.scrub import ScrubConfig
from gateway.registry import Registry
from gateway.store.catalog import (
    StudentRecord,
    TaskRecord,
    add_evaluations,
    add_student,
    chat_exchanges,
    list_students,
    list_tasks,
    next_version,
    set_exchange_tasks,
    upsert_task,
)
from gateway.store.db import Connection
from gateway.store.stages import live_evidence
from policies.gate import should_retrain
from policies.schedule import TaskPlan, order_tasks
from policies.stats import wilson

log = logging.getLogger("slimgate.distill")
Progress = Callable[[str], None]  # where a pass reports what it does, line by line


@dataclass
class TaskOutcome:
    task: str
    label: str
    action: str  # trained | skipped
    reason: str
    version: int | None = None
    passed: bool | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def discover_tasks(con: Connection, cfg: Config, embedder: SharedEmbedder) -> int:
    """Discover tasks in the newest traffic, store them, back-fill task ids. Returns count."""
    from distill.discover import discover

    rows = list(chat_exchanges(con, newest=cfg.worker.max_discover_rows))
    if not rows:
        return 0
    found = discover(rows, existing=list_tasks(con), embedder=embedder,
                     min_task_examples=max(2, min(20, cfg.distill.min_examples // 10)))
    for task in found.tasks:
        upsert_task(con, task)
    if found.assignments:
        set_exchange_tasks(con, found.assignments)
    return len(found.tasks)


def curate_task(con: Connection, cfg: Config, task: TaskRecord) -> Curated:
    kinds = cfg.distill.scrub_kinds
    return curate(
        chat_exchanges(con, task=task.id),
        heldout_percent=cfg.distill.heldout_percent,
        scrub=ScrubConfig(kinds=frozenset(kinds) if kinds is not None else None),
    )


def _live_upper(con: Connection, cfg: Config, task: TaskRecord) -> float | None:
    if not task.student_version or task.stage == "observe":
        return None
    ev = live_evidence(con, task.id, task.student_version, task.stage_since or 0.0)
    if not ev["live_n"]:
        return None
    policy = cfg.policy.for_task(task.id, task.label)
    return wilson(ev["live_agree"], ev["live_n"], policy.confidence)[1]


def why_train(
    con: Connection, cfg: Config, task: TaskRecord, curated: Curated
) -> str | None:
    """The reason to train this task now, or None."""
    n = len(curated.train)
    if n < cfg.distill.min_examples:
        return None
    students = list_students(con, task.id)
    if not students:
        return f"{n} clean examples, no student yet"
    trained_on = int(students[-1].metrics.get("train_examples", 0))
    policy = cfg.policy.for_task(task.id, task.label)
    live_upper = _live_upper(con, cfg, task)
    if task.stage != "observe":
        # A student in play is replaced only through a rollback (a new version starts at
        # shadow); while it holds up, more data is no reason to train its successor.
        healthy = live_upper is None or live_upper >= policy.min_agreement
        return None if healthy else should_retrain(n, trained_on, live_upper, policy)
    return should_retrain(n, trained_on, live_upper, policy)


def _token_budget(task: TaskRecord) -> tuple[int, int]:
    """(context the task needs, tokens to generate) from its length statistics."""
    prompt = int(task.info.get("prompt_tokens_p99") or 256)
    answer = int(task.info.get("answer_tokens_p99") or 128)
    max_new = min(1024, max(32, int(answer * 1.5) + 16))
    return prompt + max_new, max_new


def train_candidate(
    con: Connection, cfg: Config, task: TaskRecord, curated: Curated,
    prep: Prepared, kind: StudentKind, candidate: CandidateConfig | None, *, max_new: int,
    progress: bool, embedder: SharedEmbedder,
) -> TaskOutcome:
    """Train one candidate of `kind` (a generative one is `candidate`), evaluate it on the
    held-out set through its copy slots, and register it."""
    from distill.candidates import fit_encoder, fit_generative
    from distill.evaluate import embedding_similarity

    registry = Registry(cfg.distill.students_dir)
    policy = cfg.policy.for_task(task.id, task.label)
    version = new_version(con, registry, task.id)
    final = registry.version_dir(task.id, version)
    partial = final.with_name(f".v{version}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    registry.private_dir(partial)  # 0700, like its parents: no other user reads a student
    started = time.time()
    similarity = embedding_similarity(embedder)
    try:
        if candidate is None:
            info, ev = fit_encoder(cfg, prep, curated.heldout, task.kind, policy, partial,
                                   max_new=max_new, similarity=similarity)
            base_model = str(info.get("base_model") or "encoder")
            training = info.get("training") or {}
        else:
            training, ev = fit_generative(cfg, prep, curated.heldout, task.kind, policy,
                                          candidate, partial, max_new=max_new,
                                          progress=progress, similarity=similarity)
            base_model, info = candidate.model, {}
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    passed = ev.summary["n"] >= policy.min_heldout and ev.lower >= policy.min_agreement
    metrics = {**ev.summary, "train_examples": len(prep.train),
               "heldout_examples": len(curated.heldout), "dropped": dict(curated.dropped),
               "scrubbed": dict(curated.scrubbed), "training": training,
               "data_hash": curated.data_hash(), "min_agreement": policy.min_agreement,
               "min_heldout": policy.min_heldout, "student_kind": kind,
               "answer_shape": prep.shape, "copy_coverage": prep.coverage}
    copy_slots = prep.slots_meta() if kind != "encoder" else {
        "enabled": False, "reason": "the encoder points at the request's own words"}
    # The metadata marks a version complete; written inside the partial directory and then
    # renamed with it in one step, a `v<N>` directory is never seen without it.
    registry.write_meta(partial, {**info, "task": task.id, "version": version, "kind": kind,
                                  "base_model": base_model, "copy_slots": copy_slots,
                                  "candidate": candidate.model_dump() if candidate else None,
                                  "metrics": metrics})
    partial.rename(final)
    add_evaluations(con, task.id, version, ev.rows)
    add_student(con, StudentRecord(task=task.id, version=version, path=registry.relative(final),
                                   base_model=base_model,
                                   status="passed" if passed else "failed", metrics=metrics))
    verdict = "passed" if passed else "failed"
    stopped = " (stopped part-way: hopeless)" if training.get("stopped_by") == "hopeless" else ""
    reason = (f"{kind} {base_model}: held-out agreement {ev.summary['agreement']:.2f} "
              f"[{ev.summary['lower']:.2f}, {ev.summary['upper']:.2f}] over {ev.summary['n']} "
              f"{verdict} the gate (lower bound ≥ {policy.min_agreement:.2f}, "
              f"n ≥ {policy.min_heldout}){stopped}")
    return TaskOutcome(task.id, task.label, "trained", reason, version, passed, metrics,
                       time.time() - started)


def distill_task(
    con: Connection, cfg: Config, task: TaskRecord, curated: Curated, *,
    embedder: SharedEmbedder, progress: bool = True, report: Progress = log.info,
    encoder: bool | None = None,
) -> TaskOutcome:
    """Train student kinds cheapest first (candidates smallest first) until one passes."""
    from distill.candidates import prepare

    needed, max_new = _token_budget(task)
    prep = prepare(task.kind, curated, cfg.distill.max_train_examples, encoder=encoder,
                   kinds=list(cfg.distill.student_kinds))
    cov = "no copied values" if prep.coverage is None else f"copy-slot coverage {prep.coverage:.2f}"
    report(f"{task.id}: answers are {prep.shape}, {cov}")
    choices = rank_candidates(cfg.distill.candidates, needed_tokens=needed,
                              licences=cfg.distill.licences, max_params=cfg.distill.max_params)
    runs: list[tuple[StudentKind, CandidateConfig | None]] = []
    for choice in prep.plan:
        if choice.reason:
            report(f"{task.id}: not training the {choice.kind} kind: {choice.reason}")
        elif choice.kind == "encoder":
            runs.append(("encoder", None))
        else:
            min_agreement = cfg.policy.for_task(task.id, task.label).min_agreement
            for c in choices:
                reason = c.reason or prep.too_low_for(c.candidate, min_agreement)
                if reason:
                    report(f"{task.id}: skipping {c.candidate.model}: {reason}")
                else:
                    runs.append(("generative", c.candidate))
    outcome = None
    for kind, candidate in runs:
        name = candidate.model if candidate else "encoder"
        report(f"{task.id} ({task.label}): training {kind} {name} on "
               f"{len(prep.train)} examples, {len(curated.heldout)} held out")
        try:
            outcome = train_candidate(con, cfg, task, curated, prep, kind, candidate,
                                      max_new=max_new, progress=progress, embedder=embedder)
        except Exception as e:  # one candidate's failure must not stop the others
            log.exception("training %s on task %s failed", name, task.id)
            outcome = record_failure(con, cfg, task, name, curated, f"{type(e).__name__}: {e}")
        report(f"{task.id}: v{outcome.version} {outcome.reason}")
        if outcome.passed:
            break
        if outcome.metrics.get("training", {}).get("stopped_by") == "hopeless":
            break  # a bigger candidate waits for more data: other tasks come first
    return outcome or TaskOutcome(task.id, task.label, "skipped", "no eligible candidate")


def new_version(con: Connection, registry: Registry, task_id: str) -> int:
    """The next version number, past both the store's and the disk's (a run killed between
    writing its files and its row leaves the number taken)."""
    return max(next_version(con, task_id), max(registry.versions(task_id), default=0) + 1)


def record_failure(
    con: Connection, cfg: Config, task: TaskRecord, model: str,
    curated: Curated, error: str,
) -> TaskOutcome:
    """A failed run is registered too (status `error`, no files), so the task is retried only
    when its data has grown, not on every pass."""
    version = new_version(con, Registry(cfg.distill.students_dir), task.id)
    metrics = {"error": error, "train_examples": len(curated.train),
               "heldout_examples": len(curated.heldout)}
    add_student(con, StudentRecord(task=task.id, version=version, path="",
                                   base_model=model, status="error", metrics=metrics))
    return TaskOutcome(task.id, task.label, "trained", f"{model}: {error}", version,
                       False, metrics)


def schedule(
    con: Connection, cfg: Config, ready: list[tuple[TaskRecord, Curated, str]]
) -> list[tuple[TaskRecord, Curated, str]]:
    """The tasks to train, highest expected win first (`policies.schedule.order_tasks`)."""
    plans = {}
    for task, curated, _ in ready:
        students = [s for s in list_students(con, task.id) if s.status != "error"]
        last = students[-1].metrics.get("agreement") if students else None
        policy = cfg.policy.for_task(task.id, task.label)
        plans[task.id] = TaskPlan(task.id, task.kind, len(curated.train),
                                  None if last is None else float(last), policy.min_agreement)
    order = {p.task: i for i, p in enumerate(order_tasks(list(plans.values())))}
    return sorted(ready, key=lambda r: order[r[0].id])


def run_distill(
    cfg: Config, *, task_id: str | None = None, progress: bool = True,
    report: Progress = log.info, stop: threading.Event | None = None,
    embedder: SharedEmbedder | None = None,
) -> list[TaskOutcome]:
    """One distill pass. `embedder` lets a long-lived caller (the worker) load MiniLM once."""
    from gateway.store.migrations import connect

    embedder = embedder or SharedEmbedder()
    con = connect(cfg.store)
    try:
        found = discover_tasks(con, cfg, embedder)
        report(f"discovered {found} tasks")
        outcomes: list[TaskOutcome] = []
        ready: list[tuple[TaskRecord, Curated, str]] = []
        for task in list_tasks(con):
            if task_id and task.id != task_id:
                continue
            if cfg.policy.for_task(task.id, task.label, task.pin).pin == "teacher":
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
            if why is None:
                outcomes.append(TaskOutcome(
                    task.id, task.label, "skipped",
                    f"{len(curated.train)} clean examples (needs {cfg.distill.min_examples}) "
                    "or nothing new since the last student"))
                continue
            ready.append((task, curated, why))
        # Quick wins first (policies.schedule): one task trains at a time, so a task no
        # small model learns must not hold back those that promote in a minute.
        for task, curated, why in schedule(con, cfg, ready):
            if stop is not None and stop.is_set():
                break
            report(f"{task.id}: {why}")
            outcomes.append(distill_task(con, cfg, task, curated, progress=progress,
                                         report=report, embedder=embedder))
        return outcomes
    finally:
        con.close()
