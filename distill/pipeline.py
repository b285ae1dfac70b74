"""Steps S2-S5 for every task: curate → discover → select → fine-tune → held-out evaluation.

The steps one task goes through (`distill.passes.run_distill` orders the tasks): discovery
and curation; whether it is ready (its judged evidence could pass the gate, and no student
yet, or data grown enough / drift seen); its copy slots; student kinds cheapest first
(`distill.kind_plan`; generative candidates pretrained first, where worth their minutes), each
evaluated on the task's held-out requests and repeats through its copy slots and registered
(passed, near or failed; a pass or a near miss ends the task's runs).
A version is trained in a `.partial` directory and becomes visible only when complete: a
kill never leaves a half-written student behind.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from distill.candidates import Prepared
from distill.curate import Curated, curate
from distill.plan import plan_runs, token_budget
from distill.throughput import measured_rates
from distill.train import Interrupt, trains_lora
from distill.warm_start import warm_start
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
from gateway.task_ids import task_tenant
from policies.gate import should_retrain
from policies.schedule import (
    seconds_to_judgeable,
)
from policies.sequential import heldout_verdict
from policies.settings import TaskPolicy
from policies.stats import passable_n, wilson
from policies.student_kinds import CHEAP_KINDS, StudentKind

if TYPE_CHECKING:
    from distill.judge_client import HeldoutJudge

log = logging.getLogger("slimgate.distill")
Progress = Callable[[str], None]  # where a pass reports what it does, line by line


@dataclass
class TaskOutcome:
    task: str
    label: str
    action: str  # trained | skipped | interrupted
    reason: str
    version: int | None = None
    passed: bool | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    status: str | None = None  # the student's held-out verdict: passed | near | failed | error
    expensive_left: bool = False  # after a cheap phase: generative runs remain to be made
    judgeable_in_s: float | None = None  # skipped for data: when it should have enough


def discover_tasks(con: Connection, cfg: Config, embedder: SharedEmbedder) -> int:
    """Discover tasks in the newest traffic, store them, back-fill task ids. Returns count."""
    from distill.discover import discover

    rows = list(chat_exchanges(con, newest=cfg.worker.max_discover_rows))
    if not rows:
        return 0
    existing = list_tasks(con)
    found = discover(rows, existing=existing, embedder=embedder,
                     min_task_examples=cfg.distill.min_task_requests,
                     namespace_of=cfg.server.task_namespace,
                     max_tasks_per_tenant=cfg.server.max_tasks_per_tenant)
    if cfg.distill.name_tasks == "teacher":
        name_new_tasks(con, cfg, found, rows, {t.id for t in existing})
    for task in found.tasks:
        upsert_task(con, task)
    if found.assignments:
        set_exchange_tasks(con, found.assignments)
    return len(found.tasks)


def name_new_tasks(con: Connection, cfg: Config, found: Any, rows: list[dict[str, Any]],
                   known: set[str]) -> None:
    """Ask the teacher once for each new discovered task's name (`distill.name_tasks`)."""
    from distill.task_labels import dedupe_labels
    from distill.teacher_names import teacher_name

    by_seq = {r["seq"]: r for r in rows}
    mine: dict[str, list[dict[str, Any]]] = {}
    for task_id, seq in found.assignments:
        if task_id is not None and seq in by_seq:
            mine.setdefault(task_id, []).append(by_seq[seq])
    for task in found.tasks:
        if task.id in known or task.explicit or task.id not in mine:
            continue
        name = teacher_name(con, cfg, task, mine[task.id])
        if name is not None:
            task.label, task.info["label_from"] = name, "teacher"
    dedupe_labels(found.tasks)


def curate_task(con: Connection, cfg: Config, task: TaskRecord) -> Curated:
    kinds = cfg.distill.scrub_kinds
    tenant = task_tenant(task.info)
    # Only the task's own tenant's rows, whatever the task column says (rows placed by an
    # older gateway that matched prompts across tenants stay out of its training data).
    rows = (r for r in chat_exchanges(con, task=task.id)
            if cfg.server.task_namespace(r["key_id"]) == tenant)
    policy = cfg.policy.for_task(task.id, task.label)
    return curate(
        rows,
        heldout_percent=cfg.distill.heldout_percent,
        scrub=ScrubConfig(kinds=frozenset(kinds) if kinds is not None else None),
        min_evidence=judgeable_n(policy),
    )


def judgeable_n(policy: TaskPolicy) -> int:
    """Comparisons a task's judged evidence needs before training is worth it: the fewest a
    perfect student could pass the gate on, and never fewer than `min_heldout`."""
    return max(policy.min_heldout, passable_n(policy.min_agreement, policy.confidence))


def missing_data(cfg: Config, task: TaskRecord, curated: Curated) -> str | None:
    """What the task lacks before a student can be trained and judged, or None."""
    policy = cfg.policy.for_task(task.id, task.label)
    need, have = judgeable_n(policy), curated.evidence
    distinct = len(curated.train)
    if distinct < cfg.distill.min_examples:
        return (f"{distinct} distinct training requests of {curated.requests} clean "
                f"(needs {cfg.distill.min_examples})")
    if have < need:
        return (f"judged evidence {have} comparisons ({len(curated.heldout)} held-out "
                f"requests, {curated.heldout_percent}%, and repeats) of the {need} the gate "
                f"needs at {policy.min_agreement:.2f} / {policy.confidence:.0%}")
    return None


def _live_upper(con: Connection, cfg: Config, task: TaskRecord) -> float | None:
    if not task.student_version or task.stage == "observe":
        return None
    ev = live_evidence(con, task.id, task.student_version, task.stage_since or 0.0)
    if not ev["live_n"]:
        return None
    policy = cfg.policy.for_task(task.id, task.label)
    return wilson(ev["live_agree"], ev["live_n"], policy.confidence)[1]


def judgeable_in(cfg: Config, task: TaskRecord, curated: Curated, now: float) -> float | None:
    """Seconds until a task that lacks judged evidence should have it (None: no estimate)."""
    policy = cfg.policy.for_task(task.id, task.label)
    return seconds_to_judgeable(curated.reach, judgeable_n(policy), curated.requests,
                                curated.first_at, curated.last_at, now)


def why_train(
    con: Connection, cfg: Config, task: TaskRecord, curated: Curated
) -> str | None:
    """The reason to train this task now, or None."""
    n = len(curated.train)
    if missing_data(cfg, task, curated) is not None:
        return None
    students = list_students(con, task.id)
    if not students:
        return (f"{n} distinct requests ({curated.requests} clean), judged on "
                f"{curated.evidence} comparisons; no student yet")
    trained_on = int(students[-1].metrics.get("train_examples", 0))
    policy = cfg.policy.for_task(task.id, task.label)
    live_upper = _live_upper(con, cfg, task)
    in_play = next((s for s in students if s.version == task.student_version), None)
    if task.stage == "shadow" and in_play is not None and in_play.status == "near":
        # A near miss waiting in shadow serves no client: a successor trained on grown data
        # may replace it there (the gate swaps it in when its held-out bound is higher).
        return should_retrain(n, trained_on, live_upper, policy)
    if task.stage != "observe":
        # A student in play is replaced only through a rollback (a new version starts at
        # shadow); while it holds up, more data is no reason to train its successor.
        healthy = live_upper is None or live_upper >= policy.min_agreement
        return None if healthy else should_retrain(n, trained_on, live_upper, policy)
    # In observe: the last student failed, was rolled back or missed its held-out bar; how
    # close the best of them came sets how much more data the next one needs.
    judged = [float(s.metrics["agreement"]) for s in students
              if s.status != "error" and "agreement" in s.metrics]
    return should_retrain(n, trained_on, live_upper, policy,
                          last_agreement=max(judged) if judged else None)


def train_candidate(
    con: Connection, cfg: Config, task: TaskRecord, curated: Curated,
    prep: Prepared, kind: StudentKind, candidate: CandidateConfig | None, *, max_new: int,
    progress: bool, embedder: SharedEmbedder, interrupt: Interrupt | None = None,
) -> TaskOutcome:
    """Train one candidate of `kind` (a generative one is `candidate`; a cheap kind has
    none), evaluate it on the held-out set through its copy slots, and register it."""
    from distill.candidates import fit_encoder, fit_generative
    from distill.evaluate import embedding_similarity, with_new_requests
    from distill.heap import release_heap

    registry = Registry(cfg.distill.students_dir)
    policy = cfg.policy.for_task(task.id, task.label)
    version = new_version(con, registry, task.id)
    final = registry.version_dir(task.id, version)
    partial = final.with_name(f".v{version}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    registry.private_dir(partial)  # 0700, like its parents: no other user reads a student
    started = time.time()
    similarity = embedding_similarity(embedder)
    text_judge = heldout_judge(con, cfg, task, version)
    asked = prep  # what a generative candidate learns and is asked with (its copy slots)
    try:
        if kind == "encoder":
            info, ev = fit_encoder(cfg, prep, curated.judged, task.kind, policy, partial,
                                   max_new=max_new, similarity=similarity,
                                   text_judge=text_judge)
            base_model = str(info.get("base_model") or "encoder")
            training = info.get("training") or {}
        elif candidate is not None:
            asked = prep.for_candidate(candidate, policy.min_agreement,
                                       cfg.distill.training.exemplars)
            warm = warm_start(list_students(con, task.id), registry, base_model=candidate.model,
                              slots=asked.slots is not None,
                              exemplars=asked.exemplars.k if asked.exemplars else 0,
                              heldout_percent=curated.heldout_percent) \
                if trains_lora(candidate.model, candidate.method) else None
            training, ev = fit_generative(cfg, asked, curated.judged, task.kind, policy,
                                          candidate, partial, max_new=max_new,
                                          progress=progress, similarity=similarity,
                                          interrupt=interrupt, text_judge=text_judge,
                                          warm_from=warm.path if warm else None,
                                          # going on, it sees the examples in a new order
                                          seed=version if warm else 0)
            if warm:  # the version, not the registry path the run was given
                training["warm_from"] = f"v{warm.version}"
            base_model, info = candidate.model, {}
        else:
            raise ValueError(f"no way to train a {kind} student without a candidate")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        release_heap()  # the run's models and activations, kept by the allocator otherwise
    ev = with_new_requests(ev, {ex.request_id for ex in curated.heldout}, curated.new_mass,
                           policy.confidence)
    status = heldout_verdict(int(ev.summary["n"]), ev.lower, float(ev.summary["upper"]),
                             policy.min_agreement, policy.min_heldout)
    metrics = {**ev.summary, "train_examples": len(prep.train),
               "heldout_examples": len(curated.heldout), "dropped": dict(curated.dropped),
               "heldout_percent": curated.heldout_percent, "requests": curated.requests,
               "repeats_judged": len(curated.repeated),
               "scrubbed": dict(curated.scrubbed), "training": training,
               "data_hash": curated.data_hash(), "min_agreement": policy.min_agreement,
               "min_heldout": policy.min_heldout, "student_kind": kind,
               "answer_shape": prep.shape, "copy_coverage": prep.coverage}
    if text_judge is not None:
        metrics["judge"] = {**text_judge.usage.as_dict(), "unjudged": text_judge.unjudged}
    shown = None  # the worked examples it is asked with: their own file, their count here
    if asked.exemplars is not None and kind != "encoder":
        asked.exemplars.save(partial)
        shown = {"k": asked.exemplars.k, "exchanges": len(asked.exemplars)}
    copy_slots = asked.slots_meta() if kind != "encoder" else {
        "enabled": False, "reason": "the encoder points at the request's own words"}
    # The metadata marks a version complete; written inside the partial directory and then
    # renamed with it in one step, a `v<N>` directory is never seen without it.
    registry.write_meta(partial, {**info, "task": task.id, "version": version, "kind": kind,
                                  "base_model": base_model, "copy_slots": copy_slots,
                                  **({"exemplars": shown} if shown else {}),
                                  "candidate": candidate.model_dump() if candidate else None,
                                  "metrics": metrics})
    partial.rename(final)
    add_evaluations(con, task.id, version, ev.rows)
    add_student(con, StudentRecord(task=task.id, version=version, path=registry.relative(final),
                                   base_model=base_model,
                                   status=status, metrics=metrics))
    verdict = {"passed": "passed", "near": "nearly passed", "failed": "failed"}[status]
    stopped = " (stopped part-way: hopeless)" if training.get("stopped_by") == "hopeless" else ""
    if training.get("warm_from"):
        stopped += f" (trained on from {training['warm_from']}'s adapter)"
    if cut := ev.summary.get("stopped_early"):
        stopped += (f" (judged on {cut['after']} of {cut['of']}: the rest could not bring it "
                    "to the bar)")
    reason = (f"{kind} {base_model}: held-out agreement {ev.summary['agreement']:.2f} "
              f"[{ev.summary['lower']:.2f}, {ev.summary['upper']:.2f}] over {ev.summary['n']} "
              f"{verdict} the gate (lower bound ≥ {policy.min_agreement:.2f}, "
              f"n ≥ {policy.min_heldout}){stopped}")
    if status == "near":
        reason += "; a near miss (upper bound ≥ the bar): shadow proves it on live traffic"
    return TaskOutcome(task.id, task.label, "trained", reason, version, status == "passed",
                       metrics, time.time() - started, status)


def heldout_judge(con: Connection, cfg: Config, task: TaskRecord,
                  version: int) -> HeldoutJudge | None:
    """The teacher as judge of the gate's free-text pairs, where the task's policy says
    `text_judge = "teacher"` (docs/policies.md); None: the embedding compares them."""
    from distill.judge_client import HeldoutJudge, teacher_model

    policy = cfg.policy.for_task(task.id, task.label)
    if policy.text_judge != "teacher":
        return None
    return HeldoutJudge(cfg, policy, task=task.id, model=teacher_model(con, task.id), con=con,
                        seed=version)


Phase = Literal["cheap", "expensive", "all"]


def distill_task(
    con: Connection, cfg: Config, task: TaskRecord, curated: Curated, *,
    embedder: SharedEmbedder, progress: bool = True, report: Progress = log.info,
    encoder: bool | None = None, phase: Phase = "all", interrupt: Interrupt | None = None,
    only: str | None = None,
) -> TaskOutcome:
    """Train student kinds cheapest first (candidates smallest first) until one passes or
    nearly passes (its held-out upper bound reaches the bar: shadow, free for clients, then
    proves it on live traffic).

    `phase` "cheap" makes only the encoder run, "expensive" only the generative ones (each
    stopped by `interrupt` when other work waits); the outcome's `expensive_left` says
    whether generative runs remain after a cheap phase. `only`: the one candidate (by
    model) to run, as when a LoRA run goes on from its adapter on the same data.
    """
    from distill.candidates import prepare
    from distill.train import Interrupted

    _, max_new = token_budget(task)
    prep = prepare(task.kind, curated, cfg.distill.max_train_examples, encoder=encoder,
                   kinds=list(cfg.distill.student_kinds))
    cov = "no copied values" if prep.coverage is None else f"copy-slot coverage {prep.coverage:.2f}"
    report(f"{task.id}: answers are {prep.shape}, {cov}")
    runs = plan_runs(cfg, task, prep, last_agreement(con, task), report,
                     rates=measured_rates(con, task_tenant(task.info)),
                     students=list_students(con, task.id))
    cheap = [r for r in runs if r[0] in CHEAP_KINDS]
    chosen = runs if phase == "all" else cheap if phase == "cheap" else \
        [r for r in runs if r[0] not in CHEAP_KINDS]
    if only is not None:
        chosen = [r for r in chosen if r[1] is not None and r[1].model == only]
    outcome = None
    for kind, candidate, _ in chosen:
        name = candidate.model if candidate else kind
        report(f"{task.id} ({task.label}): training {kind} {name} on "
               f"{len(prep.train)} examples, judged on {len(curated.heldout)} held out and "
               f"{len(curated.repeated)} repeated ({curated.evidence} comparisons)")
        try:
            outcome = train_candidate(con, cfg, task, curated, prep, kind, candidate,
                                      max_new=max_new, progress=progress, embedder=embedder,
                                      interrupt=interrupt)
        except Interrupted as e:
            report(f"{task.id}: {name} {e}; it runs again once no cheap run waits")
            return TaskOutcome(task.id, task.label, "interrupted", str(e))
        except Exception as e:  # one candidate's failure must not stop the others
            log.exception("training %s on task %s failed", name, task.id)
            outcome = record_failure(con, cfg, task, name, curated, f"{type(e).__name__}: {e}")
        report(f"{task.id}: v{outcome.version} {outcome.reason}")
        if outcome.status in ("passed", "near"):
            break  # a near miss proves itself in shadow before anything dearer is tried
        if outcome.metrics.get("training", {}).get("stopped_by") == "hopeless":
            break  # a bigger candidate waits for more data: other tasks come first
    if outcome is None:
        outcome = TaskOutcome(task.id, task.label, "skipped", "no eligible candidate")
    outcome.expensive_left = phase == "cheap" and outcome.status not in ("passed", "near") \
        and any(r[0] not in CHEAP_KINDS for r in runs)
    return outcome


def last_agreement(con: Connection, task: TaskRecord) -> float | None:
    """Held-out agreement of the task's newest student that trained (errors aside)."""
    students = [s for s in list_students(con, task.id) if s.status != "error"]
    last = students[-1].metrics.get("agreement") if students else None
    return None if last is None else float(last)


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
                       False, metrics, status="error")
