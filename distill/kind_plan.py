"""Step S4 by answer shape: which student kinds can express a task's answers, cheapest first.

The shape comes from the task's answers: a label, JSON of enums only, JSON with values
copied from the request, a tool call, code (SQL, a fenced block: `policies.code_text`), or
free text. Every kind in policies/student_kinds.py is planned in its order, each by its
entry in `CHOOSERS`. An encoder/classifier student
(labels, enums, tool names, copied spans; `distill.encoder_student`) is the cheapest where
it can express the answers (its span pointers reach a copied value the slots missed); a
generative student can express every shape and is always planned last (`Prepared.too_low_for`
rules out scratch candidates whose copy-slot coverage leaves the gate out of reach).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from gateway.copy_slots import CopySlots
from policies import student_kinds
from policies.code_text import is_code
from policies.student_kinds import StudentKind

Shape = Literal["label", "enum_json", "copy_json", "tool_call", "code", "text"]
# A task's answers are code when nearly all of them are: the rule COPY_SHARE follows
# (distill.copying), not a fit; one prose answer among queries does not make prose a task.
CODE_SHARE = 0.9


@dataclass(frozen=True)
class KindChoice:
    kind: StudentKind
    reason: str | None  # why this kind is not tried; None when it is


def answer_shape(task_kind: str, slots: CopySlots | None) -> Shape:
    """The shape of a task's answers from its discovered output kind and its copy fields."""
    if task_kind == "label":
        return "label"
    if task_kind == "json":
        return "copy_json" if slots is not None else "enum_json"
    if task_kind == "tool_call":
        return "tool_call"
    return "text"


def code_answers(train: list[Any]) -> bool:
    """Whether a task's training answers are code (at least CODE_SHARE of them)."""
    texts = [t for t in (getattr(ex, "answer", {}).get("content") for ex in train)
             if isinstance(t, str)]
    return bool(texts) and sum(map(is_code, texts)) >= CODE_SHARE * len(texts)


def encoder_available() -> bool:
    """Whether the encoder student kind is installed (`distill.encoder_student`)."""
    return importlib.util.find_spec("distill.encoder_student") is not None


def plan_kinds(
    shape: Shape, train: list[Any], slots: CopySlots | None, *,
    encoder: bool | None = None, allowed: list[str] | None = None,
) -> list[KindChoice]:
    """Every student kind in the order to try, each with why it is skipped (if it is).

    `train` are the task's training examples as the client wrote them (the encoder kind
    reads them so; a generative student sees them delexicalized when the task has copy
    slots). `encoder` overrides the installed-module check (tests);
    `allowed` is `distill.student_kinds` (None: every kind).
    """
    return [KindChoice(kind, "not in distill.student_kinds")
            if allowed is not None and kind not in allowed
            else CHOOSERS[kind](shape, train, slots, encoder)
            for kind in student_kinds.STUDENT_KINDS]


def _encoder_choice(shape: Shape, train: list[Any], slots: CopySlots | None,
                    available: bool | None) -> KindChoice:
    if available is None:
        available = encoder_available()
    if not available:
        return KindChoice("encoder", "the encoder student kind is not installed")
    if shape in ("text", "code"):
        return KindChoice("encoder", f"{'free-text' if shape == 'text' else 'code'} answers: "
                                     "an encoder cannot write them")
    from distill.encoder_student import can_express

    ok, why = can_express(train)
    return KindChoice("encoder", None if ok else f"cannot express the answers: {why}")


def _generative_choice(shape: Shape, train: list[Any], slots: CopySlots | None,
                       encoder: bool | None) -> KindChoice:
    return KindChoice("generative", None)  # a generative student can write every shape


# Per student kind, whether it can express a task's answers: (shape, training examples as
# the client wrote them, copy slots, the `encoder` override of `plan_kinds`) -> its choice.
Chooser = Callable[[Shape, list[Any], CopySlots | None, bool | None], KindChoice]
CHOOSERS: dict[StudentKind, Chooser] = {
    "encoder": _encoder_choice, "generative": _generative_choice,
}
