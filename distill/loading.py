"""How a registered student directory becomes a model that answers requests.

The gateway never imports `distill`: `slimgate serve` hands it `load_student` as the
embedded engine's loader. One place decides which class loads a student directory: its
slimgate.json `kind` — `"encoder"` for `distill.encoder_student.EncoderStudent`, anything
else (or none: students trained before kinds existed) for the generative `Student`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KINDS = ("generative", "encoder")


def student_kind(path: str | Path) -> str:
    """The kind a student directory holds, from its slimgate.json ("generative" if unsaid)."""
    try:
        meta = json.loads((Path(path) / "slimgate.json").read_text())
    except (OSError, ValueError):
        return "generative"
    kind = meta.get("kind") if isinstance(meta, dict) else None
    return kind if isinstance(kind, str) else "generative"


def load_student(path: str) -> Any:
    """A loaded student for `path`, with `generate(requests, max_new_tokens)`."""
    kind = student_kind(path)
    if kind == "encoder":
        from distill.encoder_student import EncoderStudent

        return EncoderStudent.load(path)
    if kind != "generative":
        raise ValueError(f"Student {path} is of unknown kind {kind!r}; known: {list(KINDS)}.")
    from distill.student import Student

    return Student.load(path)
