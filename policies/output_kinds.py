"""What kind of answer a task produces: a tool call, JSON, a short label, or free text.

The kind decides how a student's answer is checked against the teacher's (exact tool call,
JSON equality, label match, or a semantic score), so it is a pure function of the answer
and the request's response format.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any, Literal

import orjson

Kind = Literal["tool_call", "json", "label", "text"]
KINDS: tuple[Kind, ...] = ("tool_call", "json", "label", "text")
LABEL_MAX_WORDS = 5
LABEL_MAX_CHARS = 48


def _is_json_container(text: str) -> bool:
    text = text.strip()
    if not text or text[0] not in "[{":
        return False
    try:
        return isinstance(orjson.loads(text), dict | list)
    except orjson.JSONDecodeError:
        return False


def output_kind(answer: dict[str, Any], request: dict[str, Any] | None = None) -> Kind:
    """The kind of one assistant message (`request` gives the asked response format)."""
    if answer.get("tool_calls") or answer.get("function_call"):
        return "tool_call"
    rf = (request or {}).get("response_format")
    if isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema"):
        return "json"
    content = answer.get("content")
    text = content if isinstance(content, str) else ""
    if _is_json_container(text):
        return "json"
    stripped = text.strip()
    if (stripped and "\n" not in stripped and len(stripped) <= LABEL_MAX_CHARS
            and len(stripped.split()) <= LABEL_MAX_WORDS):
        return "label"
    return "text"


def task_kind(kinds: Iterable[str]) -> Kind:
    """The majority kind; ties go to the more structured kind, none seen is "text"."""
    counts = Counter(k for k in kinds if k in KINDS)
    if not counts:
        return "text"
    return max(KINDS, key=lambda k: (counts[k], -KINDS.index(k)))
