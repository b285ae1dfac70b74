"""Which task the worker trains next, when an expensive run is worth its minutes, and when
a training run is hopeless.

The worker trains one task at a time, so order is time to first promotion: a task a small
model learns in a minute must not wait behind one no small model can learn. A pass is
breadth first — every ready task gets its cheapest student kind (the encoder, seconds to a
minute) before any task gets an expensive one (a generative candidate, minutes) — tasks are
ordered by expected win (answer shape, then earlier results, then data), an expensive run is
made only where its expected win clears `MIN_EXPENSIVE_WIN`, and a run whose held-out
agreement is far from the gate part-way through its budget is stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

from policies.stats import wilson

# Prior chance, by output kind, that a small student passes the gate: labels are easiest;
# JSON and tool calls pass once copying is solved (copy slots); free text rarely does.
SHAPE_PRIOR = {"label": 0.9, "json": 0.7, "tool_call": 0.7, "text": 0.1}
RETRY_FLOOR = 0.2  # share of its prior a failed task keeps: it is retrained on grown data
HOPELESS_FRACTION = 0.5  # stop when the upper bound is under this share of the gate's bar
# ... and only once its answers are mostly well-formed: a student still learning the format
# (invalid JSON, broken tool calls) is behind, not hopeless. Observed only on our own demo
# workload (2 CPU threads, heavy load: structured students are invalid for the first third
# of their budget, the writer writes well-formed text almost at once) and on one GPU run on
# the same tasks; not yet checked on public data. It errs towards training on: a run stops
# only when it is both mostly well-formed and far from the gate.
HOPELESS_MIN_VALID = 0.8


# Chance that a *scratch* generative student passes the gate, by answer shape (distill.kind_plan),
# from every scratch run recorded here (docs/distillation.md, issues 15, 19, 22; 2-core CPU,
# 35-600 s budgets): labels passed (sentiment, ticket_triage 1.00 held-out); copied JSON and
# templated text passed once each (order ids and dates 40/40 in tests; a text-to-SQL task no
# one here wrote, 1.00 in 74 s), and failed elsewhere (0.00-0.38); tool calls never passed
# (0.00 on the demo, 0.65-0.93 on a public-style scheduling task); free text never (0.00-0.51).
# Code (SQL) on public text-to-SQL (text2sql-data, `bench/pretrained_run.py --candidate
# scratch:tiny --tasks sql_restaurants sql_geography sql_wikisql`, 2026-12-07, compared by
# tokens): restaurants' templated queries 0.90 [0.81, 0.96] in 111 s (a near miss), geography
# 0.02 and WikiSQL 0.00, both cut as hopeless at half their budget: one try is cheap.
SCRATCH_PRIOR = {"label": 0.5, "enum_json": 0.4, "copy_json": 0.3, "tool_call": 0.1,
                 "code": 0.1, "text": 0.02}
# A pretrained candidate (LoRA on a small instruct model) has passed once: SNIPS intent labels
# on a 2-core CPU in 600 s at LoRA's 1e-3 rate (0.99, one split; 0.92 on another). Elsewhere:
# one GPU run (0.60 on tool selection, 0.22 on extraction, 100 s) and CPU runs of 600 s (SNIPS
# as JSON 0.00; WikiSQL queries 0.42; restaurants' long queries 0.00; docs/students.md).
# An even prior: on a CPU, S4's measured step check (distill.select.MIN_STEPS), the run's
# part-way hopeless check and whether the task's own runs still gain
# (distill.warm_start.going_on), not this prior, keep a slow or stuck one off.
PRETRAINED_PRIOR = 0.3
# Answer shapes a scratch student has passed at least once (the runs behind SCRATCH_PRIOR).
# Where a pretrained candidate is planned first, a scratch one follows it only for these (and
# for copyable text): for tool calls and uncopyable free text it never passed, so its
# minutes go to other tasks. Without a pretrained candidate scratch is still tried.
SCRATCH_HAS_PASSED = frozenset({"label", "enum_json", "copy_json"})
# Shapes where a scratch student beat the pretrained one on this class of machine, though
# neither passed: templated SQL (restaurants, above) 0.90 against SmolLM2's 0.00 after the
# 10 LoRA steps 600 s held on 2 cores (its queries are ~150 tokens). Tried after it too.
SCRATCH_HAS_WON = frozenset({"code"})
# Free text whose copy slots leave its answers uncopyable (facts not in the request) stays
# with the teacher: scratch text is tried only where the slots make most answers copyable.
# A judgement, not fitted: FreshQA answers (public, loop bench) are ~0 copyable, the one
# scratch text pass (templated SQL) had its values all copyable; nothing measured between.
TEXT_COPYABLE_MIN = 0.5
# Below this expected win an expensive run is not made: the scratch free-text writer (0.02)
# cost 5-10 CPU minutes a try and never passed; a scratch tool-call student (0.1) still runs.
MIN_EXPENSIVE_WIN = 0.05


def expensive_win(shape: str, *, scratch: bool, copyable: float | None,
                  last_agreement: float | None, min_agreement: float) -> float:
    """Chance that one generative candidate passes: its prior by shape (free text only where
    copy slots make its answers copyable), tempered by the task's best earlier agreement."""
    if not scratch:
        prior = PRETRAINED_PRIOR
    elif shape == "text":
        prior = SCRATCH_PRIOR["text"] if (copyable or 0.0) < TEXT_COPYABLE_MIN \
            else SCRATCH_PRIOR["copy_json"]
    else:
        prior = SCRATCH_PRIOR.get(shape, 0.1)
    if last_agreement is not None:
        prior *= max(RETRY_FLOOR, min(1.0, last_agreement / min_agreement))
    return prior


def scratch_after_pretrained(shape: str, copyable: float | None) -> bool:
    """Whether a scratch candidate is still worth a run behind a pretrained one."""
    return shape in SCRATCH_HAS_PASSED or shape in SCRATCH_HAS_WON or (
        shape == "text" and (copyable or 0.0) >= TEXT_COPYABLE_MIN)


def worth_expensive_run(win: float) -> bool:
    return win >= MIN_EXPENSIVE_WIN


@dataclass(frozen=True)
class TaskPlan:
    task: str
    kind: str  # the task's output kind (label, json, tool_call, text)
    examples: int  # clean training examples
    last_agreement: float | None = None  # held-out agreement of its newest student, if any
    min_agreement: float = 0.9


def expected_win(plan: TaskPlan) -> float:
    """Chance the next training passes its gate, by shape, tempered by the last result.

    A task that failed before keeps a share of its prior in proportion to how close it came
    (at least RETRY_FLOOR: it is retrained only because its data grew): a near miss is
    worth another try before a task that scored zero, and that one before free text.
    """
    prior = SHAPE_PRIOR.get(plan.kind, 0.3)
    if plan.last_agreement is not None:
        prior *= max(RETRY_FLOOR, min(1.0, plan.last_agreement / plan.min_agreement))
    return prior


def order_tasks(plans: list[TaskPlan]) -> list[TaskPlan]:
    """Highest expected win first; among equals, more data first, then by id (stable)."""
    return sorted(plans, key=lambda p: (-expected_win(p), -p.examples, p.task))


def hopeless(agree: int, valid: int, n: int, min_agreement: float, confidence: float) -> bool:
    """Whether a part-trained student is so far from the gate that the rest of its budget
    is better spent on another task: its answers are well-formed, yet even the upper bound
    of its agreement is under HOPELESS_FRACTION of the bar."""
    if n == 0 or valid < HOPELESS_MIN_VALID * n:
        return False
    return wilson(agree, n, confidence)[1] < HOPELESS_FRACTION * min_agreement


# The shortest wait between two distill passes when a task is about to be judgeable: each
# pass discovers and curates every task (a few seconds on a 9,000-request store with the
# embedder's cache warm, docs/distillation.md), so passes this close would crowd training.
MIN_PASS_WAIT_S = 10.0


def seconds_to_judgeable(reach: int, need: int, requests: int, first_at: float | None,
                         last_at: float | None, now: float) -> float | None:
    """When a task waiting for its judged evidence should have it, in seconds from `now`, at
    the pace its clean requests came so far (`reach` judged comparisons from `requests`
    between `first_at` and `last_at`); None when there is no pace to go by: too little data,
    no evidence yet, or no request in the last 3 × MIN_PASS_WAIT_S (its traffic paused)."""
    if reach >= need or reach <= 0 or requests < 2 or first_at is None or last_at is None:
        return None
    span = last_at - first_at
    if span <= 0 or now - last_at > 3 * MIN_PASS_WAIT_S:
        return None
    per_second = reach / span  # evidence grows with requests: reach per second of traffic
    return max(0.0, last_at + (need - reach) / per_second - now)


def next_pass_wait(soonest_s: float | None, interval_s: float) -> float:
    """The worker's wait before its next pass: `worker.interval_s`, shortened (down to
    MIN_PASS_WAIT_S) to when the soonest waiting task should become judgeable."""
    if soonest_s is None:
        return interval_s
    return max(min(MIN_PASS_WAIT_S, interval_s), min(interval_s, soonest_s))
