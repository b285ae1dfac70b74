"""Step S4: which candidate small models may serve a task, smallest first.

A candidate is eligible when the task's p99 prompt plus its longest answer fits the
candidate's context, its licence is on the allow-list and it is under the size cap. The
pipeline trains them in this order and stops at the first that passes its held-out gate.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import CandidateConfig


@dataclass(frozen=True)
class Choice:
    candidate: CandidateConfig
    reason: str | None  # why it is not eligible; None when it is


def rank_candidates(
    candidates: list[CandidateConfig],
    *,
    needed_tokens: int,
    licences: list[str],
    max_params: int,
) -> list[Choice]:
    allowed = {lic.lower() for lic in licences}
    out = []
    for c in sorted(candidates, key=lambda c: c.params):
        reason = None
        if c.licence.lower() not in allowed:
            reason = f"licence {c.licence!r} is not in distill.licences"
        elif c.params > max_params:
            reason = f"{c.params:,} parameters exceed distill.max_params ({max_params:,})"
        elif needed_tokens > c.context:
            reason = f"needs {needed_tokens} tokens of context, has {c.context}"
        out.append(Choice(c, reason))
    return out


def eligible(choices: list[Choice]) -> list[CandidateConfig]:
    return [c.candidate for c in choices if c.reason is None]
