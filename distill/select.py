"""Step S4: which candidate small models may serve a task, pretrained before scratch.

A candidate is eligible when the task's p99 prompt plus its longest answer fits the
candidate's context, its licence is on the allow-list, it is under the size cap and, once
its training speed has been measured here, the time budget holds enough training steps on
the task's examples (`MIN_STEPS`). Pretrained candidates come first, smallest first, then
scratch ones: a small instruct model already writes language, a scratch one learns a
template or nothing. The pipeline trains them in this order and stops at the first that
passes its held-out gate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from distill.throughput import BudgetSteps
from gateway.config import CandidateConfig

# Training steps a candidate's run must hold within the time budget at its measured speed.
# What a run needs is steps, not a pass over its data. Measured with SmolLM2-135M, LoRA at
# 1e-3, on a 2-core CPU (docs/students.md): runs of 10 and 15 steps learnt nothing (public
# restaurants SQL, SNIPS as JSON: 0.00 exact); 38-57 steps reached 0.42-0.43 exact on WikiSQL
# and restaurants, ~100 passed SNIPS intents; and a run that saw under a third of 2,500
# WikiSQL examples learnt as much as one over all of 500 (0.55 against 0.56-0.58) — the
# one-pass rule this replaces would have skipped it. 30 lies between the runs that learnt
# nothing and those that learnt; past it, the task's own results decide whether its runs go
# on (distill.warm_start.going_on).
MIN_STEPS = 30


@dataclass(frozen=True)
class Choice:
    candidate: CandidateConfig
    reason: str | None  # why it is not eligible; None when it is


def is_scratch(candidate: CandidateConfig) -> bool:
    return candidate.model.startswith("scratch:")


def rank_candidates(
    candidates: list[CandidateConfig],
    *,
    needed_tokens: int,
    licences: list[str],
    max_params: int,
    steps: Mapping[str, BudgetSteps] | None = None,
    budget_s: float = 0.0,
) -> list[Choice]:
    """Every candidate in training order, each with why it is not eligible (or None).

    `steps`: the training steps each candidate's run (by `model`) would make in the time
    budget (`budget_s`) on the task's examples, from its measured or estimated speed
    (`distill.throughput.budget_steps`); a candidate without one is not ruled out by time.
    """
    allowed = {lic.lower() for lic in licences}
    out = []
    for c in sorted(candidates, key=lambda c: (is_scratch(c), c.params)):
        reason = None
        held = (steps or {}).get(c.model)
        if c.licence.lower() not in allowed:
            reason = f"licence {c.licence!r} is not in distill.licences"
        elif c.params > max_params:
            reason = f"{c.params:,} parameters exceed distill.max_params ({max_params:,})"
        elif needed_tokens > c.context:
            reason = f"needs {needed_tokens} tokens of context, has {c.context}"
        elif held is not None and held.steps < MIN_STEPS:
            reason = (f"{held.basis}: distill.training.time_budget_s ({budget_s:g}) holds "
                      f"~{held.steps:.0f} training steps on the task's examples, under the "
                      f"{MIN_STEPS} a run needs")
        out.append(Choice(c, reason))
    return out


def eligible(choices: list[Choice]) -> list[CandidateConfig]:
    return [c.candidate for c in choices if c.reason is None]
