"""The kinds of student slimgate trains, cheapest first, and which of them are cheap.

`encoder`: MiniLM with a frame classifier and span pointers — labels, enums, tool names and
copied values (distill/encoder_student.py). `generative`: a causal LM fine-tuned on the
teacher's answers, any shape (distill/student.py). The one list of kinds: the config, the
loader and the planner read it; adding one starts here (docs/architecture.md, "Extending
slimgate").
"""

from __future__ import annotations

from typing import Literal

StudentKind = Literal["encoder", "generative"]
STUDENT_KINDS: tuple[StudentKind, ...] = ("encoder", "generative")  # cheapest first: tried so
# One short run with no candidate model, made for every ready task before any expensive run
# (a generative candidate) is made for any task.
CHEAP_KINDS: tuple[StudentKind, ...] = ("encoder",)
# The kind of a student whose slimgate.json names none (trained before kinds existed).
DEFAULT_KIND: StudentKind = "generative"


def as_student_kind(name: str) -> StudentKind:
    """`name` (from the config or a student's slimgate.json) as a `StudentKind`; ValueError
    if it is none."""
    for kind in STUDENT_KINDS:
        if kind == name:
            return kind
    raise ValueError(f"unknown student kind {name!r}; known: {', '.join(STUDENT_KINDS)}")
