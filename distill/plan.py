"""Which runs a task gets: S4's plan for one task (student kinds cheapest first, candidates
that clear the time check, the expected-win bar and their own chain of runs), and the runs an
earlier pass left owed — a generative run after a failed encoder, or a LoRA run cut by its
budget that goes on from its adapter."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from distill.candidates import Prepared
from distill.curate import Example
from distill.select import MIN_STEPS, is_scratch, rank_candidates
from distill.throughput import BudgetSteps, budget_steps, cpu_gflops
from distill.train import batch_rows, trains_lora
from distill.warm_start import ADAPTER, chain_agreements, going_on
from gateway.config import CandidateConfig, Config
from gateway.registry import Registry, RegistryError
from gateway.store.catalog import StudentRecord, TaskRecord, list_students
from gateway.store.db import Connection
from policies.schedule import (
    MIN_EXPENSIVE_WIN,
    expensive_win,
    scratch_after_pretrained,
    worth_expensive_run,
)
from policies.student_kinds import CHEAP_KINDS, StudentKind


def token_budget(task: TaskRecord) -> tuple[int, int]:
    """(context the task needs, tokens to generate) from its length statistics."""
    prompt = int(task.info.get("prompt_tokens_p99") or 256)
    answer = int(task.info.get("answer_tokens_p99") or 128)
    max_new = min(1024, max(32, int(answer * 1.5) + 16))
    return prompt + max_new, max_new


def plan_runs(
    cfg: Config, task: TaskRecord, prep: Prepared, last_agreement: float | None,
    report: Callable[[str], None], rates: dict[str, float] | None = None,
    students: list[StudentRecord] | None = None,
) -> list[tuple[StudentKind, CandidateConfig | None, float]]:
    """Every run worth making for the task, cheapest first, each with its expected win: the
    encoder where it can express the answers, then generative candidates in S4's order
    (pretrained before scratch, smallest first) where their expected win
    (policies.schedule.expensive_win) clears the bar. `rates`: measured training tokens/s
    per candidate (`distill.throughput`), for S4's time check; `students`: the task's
    earlier ones, whose results say whether a LoRA candidate's runs are worth going on
    (`distill.warm_start.going_on`)."""
    needed, _ = token_budget(task)
    policy = cfg.policy.for_task(task.id, task.label)
    choices = rank_candidates(
        cfg.distill.candidates, needed_tokens=needed, licences=cfg.distill.licences,
        max_params=cfg.distill.max_params,
        steps={model: got for c in cfg.distill.candidates for model, got in candidate_steps(
            cfg, [c], prep.for_candidate(c, policy.min_agreement,
                                         cfg.distill.training.exemplars).train,
            rates or {}).items()},
        budget_s=cfg.distill.training.time_budget_s)
    runs: list[tuple[StudentKind, CandidateConfig | None, float]] = []
    for choice in prep.plan:
        if choice.reason:
            report(f"{task.id}: not training the {choice.kind} kind: {choice.reason}")
        elif choice.kind in CHEAP_KINDS:
            runs.append((choice.kind, None, 1.0))
        else:
            for c in choices:
                scratch = is_scratch(c.candidate)
                reason = c.reason or prep.too_low_for(c.candidate, policy.min_agreement)
                if not reason and trains_lora(c.candidate.model, c.candidate.method):
                    reason = going_on(chain_agreements(students or [], c.candidate.model),
                                      policy.min_agreement)
                win = expensive_win(prep.shape, scratch=scratch,
                                    copyable=prep.ceiling, last_agreement=last_agreement,
                                    min_agreement=policy.min_agreement)
                pretrained = next((r[1].model for r in runs if r[1] is not None), None)
                if not reason and scratch and pretrained and \
                        not scratch_after_pretrained(prep.shape, prep.ceiling):
                    reason = (f"no scratch student has passed {prep.shape} answers here; "
                              f"the pretrained {pretrained} is tried instead")
                if not reason and not worth_expensive_run(win):
                    reason = (f"expected win {win:.2f} for {prep.shape} answers is under "
                              f"{MIN_EXPENSIVE_WIN:.2f}: not worth its minutes")
                if reason:
                    report(f"{task.id}: skipping {c.candidate.model}: {reason}")
                else:
                    runs.append(("generative", c.candidate, win))
    return runs


def candidate_steps(cfg: Config, candidates: list[CandidateConfig], train: list[Example],
                    rates: dict[str, float]) -> dict[str, BudgetSteps]:
    """The training steps each candidate's run would make on `train` in the time budget, on
    this machine: rows a step as it would train them, speed measured (`rates`) or, on a
    CPU, estimated (`distill.throughput.budget_steps`)."""
    training, cuda = cfg.distill.training, has_cuda()
    return budget_steps(
        candidates, train, budget_s=training.time_budget_s, rates=rates,
        rows={c.model: batch_rows(training, trains_lora(c.model, c.method), cuda)
              for c in candidates},
        gflops=None if cuda else cpu_speed(), prefix_reuse=training.prefix_reuse_steps)


def cpu_speed() -> float | None:
    """This CPU's matmul GFLOPS on the threads training uses (measured once), for S4's
    estimate of a candidate not yet run here; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    return cpu_gflops(torch.get_num_threads())


def has_cuda() -> bool:
    try:
        import torch
    except ImportError:  # the gateway alone, without the distill extra
        return False
    return bool(torch.cuda.is_available())


def unproven_students(con: Connection, task: TaskRecord) -> list[StudentRecord]:
    """The task's students that trained (errors aside), oldest first, while none of them
    passed or nearly passed (one in play or in shadow ends what is owed); else []."""
    students = [s for s in list_students(con, task.id) if s.status != "error"]
    return [] if any(s.status in ("passed", "near") for s in students) else students


def expensive_pending(con: Connection, task: TaskRecord) -> bool:
    """Whether the task's generative candidates are still owed a run on its current data:
    its newest student is of a cheap kind (the encoder) that did not pass, and no generative
    run followed it (an earlier pass was interrupted, or ended before reaching it)."""
    students = unproven_students(con, task)
    if not students:
        return False
    return students[-1].metrics.get("student_kind") in CHEAP_KINDS \
        and students[-1].status == "failed"


class Continuation(NamedTuple):
    candidate: CandidateConfig | None  # owed a run that goes on from its adapter
    stopped: str | None = None  # why not, where only the chain's results hold it back


def continuation_owed(con: Connection, cfg: Config, task: TaskRecord) -> Continuation:
    """The LoRA candidate owed a run that goes on from its adapter on the task's current
    data, if any (`stopped` says why not where its runs stopped gaining). Owed while no
    student of the task passed or nearly passed, its newest LoRA run (a scratch one may
    have followed it) was cut by the time budget (on a CPU a run is a few hundred small
    steps; on a GPU runs end by their epochs, and more of the same data would only be
    memorised) after at least `MIN_STEPS` steps, its adapter is on disk, and its runs on the
    task still gain (`going_on`). Measured on the same data (docs/students.md): restaurants
    SQL 0.38 -> 0.76 -> 0.76 -> 0.90, WikiSQL 0.52 -> 0.59 -> 0.60 (and 0.59 -> 0.56 in the
    worker's own passes) — for a task far from the bar, sooner than waiting for its data to
    grow."""
    students = unproven_students(con, task)
    if task.stage != "observe" or not students:
        return Continuation(None)
    lora = [s for s in students if s.metrics.get("student_kind", "generative") == "generative"
            and (s.metrics.get("training") or {}).get("method") == "lora"]
    if not lora or lora[-1].metrics["training"].get("stopped_by") != "time":
        return Continuation(None)
    last = lora[-1]
    if int(last.metrics["training"].get("steps") or 0) < MIN_STEPS:
        return Continuation(None)  # as S4 rules: a budget of so few steps is not worth it
    candidate = next((c for c in cfg.distill.candidates if c.model == last.base_model), None)
    if candidate is None:
        return Continuation(None)  # no longer configured
    try:
        if not (Registry(cfg.distill.students_dir).resolve(last.path) / ADAPTER).is_file():
            return Continuation(None)  # pruned: a run would start over, not go on
    except RegistryError:
        return Continuation(None)
    policy = cfg.policy.for_task(task.id, task.label)
    stopped = going_on(chain_agreements(students, candidate.model), policy.min_agreement)
    if stopped:
        return Continuation(None, f"{candidate.model} does not go on: {stopped}")
    return Continuation(candidate)
