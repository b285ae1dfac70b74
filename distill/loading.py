"""How a registered student directory becomes a model that answers requests.

The gateway never imports `distill`: `slimgate serve` hands it `load_student` as the
embedded engine's loader. One place decides which class loads a student directory.
"""

from __future__ import annotations

from typing import Any


def load_student(path: str) -> Any:
    """A loaded student for `path`, with `generate(requests, max_new_tokens)`."""
    from distill.student import Student

    return Student.load(path)
