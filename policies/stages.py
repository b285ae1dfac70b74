"""The stages a task (and its answer memory) moves through, and what each lets a student do.

observe → shadow → canary (each step) → primary: `policies/gate.py` moves a task between
them, `policies/router.py` says who serves in each. The one list of stages; adding one
starts here (docs/architecture.md, "Extending slimgate").
"""

from __future__ import annotations

from typing import Literal

Stage = Literal["observe", "shadow", "canary", "primary"]
STAGES: tuple[Stage, ...] = ("observe", "shadow", "canary", "primary")  # promotion order
# The student answers: in the background in shadow, for clients from canary on.
SERVING_STAGES: tuple[Stage, ...] = ("shadow", "canary", "primary")
CLIENT_STAGES: tuple[Stage, ...] = ("canary", "primary")  # the student answers clients
# Judged on held-out and live evidence pooled since the version entered shadow, at the looks
# of policies/sequential.py (shadow's exit and each canary step).
POOLED_STAGES: tuple[Stage, ...] = ("shadow", "canary")


def as_stage(name: str) -> Stage:
    """`name` (a stage read from the store) as a `Stage`; ValueError if it is none."""
    for stage in STAGES:
        if stage == name:
            return stage
    raise ValueError(f"unknown stage {name!r}; expected one of {STAGES}")
