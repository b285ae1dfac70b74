"""How a registered student directory becomes a model that answers requests.

The gateway never imports `distill`: `slimgate serve` hands it `load_student` as the
embedded engine's loader. One place decides which class loads a student directory: its
slimgate.json `kind` (policies/student_kinds.py), looked up in `LOADERS` — none (students
trained before kinds existed) reads as the default kind, the generative `Student`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from policies import student_kinds
from policies.student_kinds import DEFAULT_KIND


def _encoder(path: str) -> Any:
    from distill.encoder_student import EncoderStudent

    return EncoderStudent.load(path)


def _generative(path: str) -> Any:
    from distill.student import Student

    return Student.load(path)


# Per student kind, what loads its directory: an object with generate(requests,
# max_new_tokens). Each imports its model code (and torch) only when called.
LOADERS: dict[str, Callable[[str], Any]] = {"encoder": _encoder, "generative": _generative}


def student_kind(path: str | Path) -> str:
    """The kind a student directory holds, from its slimgate.json (the default if unsaid)."""
    try:
        meta = json.loads((Path(path) / "slimgate.json").read_text())
    except (OSError, ValueError):
        return DEFAULT_KIND
    kind = meta.get("kind") if isinstance(meta, dict) else None
    return kind if isinstance(kind, str) else DEFAULT_KIND


def load_student(path: str) -> Any:
    """A loaded student for `path`, with `generate(requests, max_new_tokens)`."""
    kind = student_kind(path)
    known = student_kinds.STUDENT_KINDS  # read at each call (tests/test_extending.py adds one)
    if kind not in known or kind not in LOADERS:
        raise ValueError(f"Student {path} is of unknown kind {kind!r}; known: {list(known)}.")
    return LOADERS[kind](path)
