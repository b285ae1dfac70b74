"""Step S4: which candidate small models may serve a task, pretrained before scratch.

A candidate is eligible when the task's p99 prompt plus its longest answer fits the
candidate's context, its licence is on the allow-list, it is under the size cap and, once
its training speed has been measured here, one pass over the task's training data fits the
time budget. Pretrained candidates come first, smallest first, then scratch ones: a small
instruct model already writes language, a scratch one learns a template or nothing. The
pipeline trains them in this order and stops at the first that passes its held-out gate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config import CandidateConfig

# Passes over its training data a candidate must be able to make within the time budget.
# One: a run that cannot show the student every example once is not worth its minutes.
MIN_PASSES = 1.0


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
    train_tokens: int = 0,
    budget_s: float = 0.0,
    rates: Mapping[str, float] | None = None,
) -> list[Choice]:
    """Every candidate in training order, each with why it is not eligible (or None).

    `rates`: training tokens per second each candidate (by `model`) reached in earlier runs
    here (`distill.throughput`); `train_tokens`: the task's training data, estimated. A
    candidate not yet measured is not ruled out by time.
    """
    allowed = {lic.lower() for lic in licences}
    out = []
    for c in sorted(candidates, key=lambda c: (is_scratch(c), c.params)):
        reason = None
        rate = (rates or {}).get(c.model)
        if c.licence.lower() not in allowed:
            reason = f"licence {c.licence!r} is not in distill.licences"
        elif c.params > max_params:
            reason = f"{c.params:,} parameters exceed distill.max_params ({max_params:,})"
        elif needed_tokens > c.context:
            reason = f"needs {needed_tokens} tokens of context, has {c.context}"
        elif rate and train_tokens and budget_s and MIN_PASSES * train_tokens / rate > budget_s:
            reason = (f"measured {rate:,.0f} training tokens/s here: one pass over the task's "
                      f"~{train_tokens:,} tokens takes ~{train_tokens / rate:,.0f} s, over "
                      f"distill.training.time_budget_s ({budget_s:g})")
        out.append(Choice(c, reason))
    return out


def eligible(choices: list[Choice]) -> list[CandidateConfig]:
    return [c.candidate for c in choices if c.reason is None]
