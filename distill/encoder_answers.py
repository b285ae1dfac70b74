"""Answers as frames and slots: what the encoder student predicts instead of generating text.

An answer (a label, a JSON object, tool calls) is a tree whose leaves are either constants —
a label, an enum value, a tool name — or values copied from the request. A *frame* is the
tree with its constants kept and its copied leaves marked as slots; copied leaves inside an
object are optional (the slot may be absent). The student classifies the frame, decides
which optional slots are present, and points at the request span that fills each slot.
Pure Python: no torch here.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# What serving needs (reading a request, filling a frame) lives with the portable runtime
# that encoder exports carry; learning-side code imports it from here as before.
from distill.encoder_portable import SLOT as SLOT
from distill.encoder_portable import cast as cast
from distill.encoder_portable import fill as fill
from distill.encoder_portable import is_slot as _is_slot
from distill.encoder_portable import message_text as message_text
from distill.encoder_portable import request_text as request_text

Path = tuple[str | int, ...]


def answer_tree(answer: dict[str, Any], request: dict[str, Any]) -> dict[str, Any] | None:
    """The answer as a plain tree: {"content": str | JSON | None, "json": bool, "calls": [...]}.
    None when the answer cannot be read (tool arguments that are not JSON)."""
    calls = []
    for call in answer.get("tool_calls") or []:
        fn = (call or {}).get("function") or {}
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except (TypeError, ValueError):
            return None
        calls.append({"name": str(fn.get("name") or ""), "arguments": args})
    content = answer.get("content")
    content = message_text(content) if content is not None else None
    is_json = False
    rf = request.get("response_format") or {}
    if content is not None and content.strip()[:1] in ("{", "[") or (
            isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema")):
        with contextlib.suppress(ValueError):
            content, is_json = json.loads(content or ""), True
    if isinstance(content, str) and not content.strip() and calls:
        content = None
    return {"content": content, "json": is_json, "calls": calls}


def leaves(value: Any, prefix: Path = ()) -> Iterable[tuple[Path, Any]]:
    """Scalar leaves with their paths (empty containers are constants, so leaves too)."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from leaves(v, (*prefix, k))
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from leaves(v, (*prefix, i))
    else:
        yield prefix, value


def tree_leaves(tree: dict[str, Any]) -> Iterable[tuple[str, Any]]:
    """(slot key, value) of every leaf: the key names the field, not the example."""
    if tree["content"] is not None:
        for path, v in leaves(tree["content"]):
            yield "content" + "".join(f"/{p}" for p in path), v
    seen: Counter[str] = Counter()
    for call in tree["calls"]:
        n = seen[call["name"]]
        seen[call["name"]] += 1
        for path, v in leaves(call["arguments"]):
            yield f"{call['name']}#{n}" + "".join(f"/{p}" for p in path), v


def value_text(value: Any) -> str | None:
    """How a copied value appears in the request, or None for what is never copied."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return value if isinstance(value, str) and value.strip() else None


def occurrences(text: str, needle: str) -> list[tuple[int, int]]:
    """Character spans of `needle` in `text` that do not cut a word or a number in two."""
    out = []
    for m in re.finditer(re.escape(needle), text):
        a, b = m.span()
        if (a > 0 and text[a - 1].isalnum() and needle[0].isalnum()) or (
                b < len(text) and text[b].isalnum() and needle[-1].isalnum()):
            continue
        out.append((a, b))
    return out


def value_type(value: Any) -> str:
    return "int" if isinstance(value, int) else "float" if isinstance(value, float) else "str"


@dataclass
class Frame:
    """An answer shape: constants kept, copied leaves replaced by (SLOT, key, type)."""

    tree: dict[str, Any]
    slots: dict[str, str] = field(default_factory=dict)  # optional slot key → value type
    count: int = 0


def _skeleton(value: Any, key: str, copied: dict[str, Any], slot_types: dict[str, str]) -> Any:
    """The frame tree of one answer part; copied leaves inside objects are dropped (optional)."""
    if isinstance(value, dict) and value:
        out = {}
        for k, v in value.items():
            sub = f"{key}/{k}"
            if sub in copied and not isinstance(v, dict | list):
                slot_types[sub] = value_type(v)
                out[k] = [SLOT, sub]  # placeholder kept to remember the key's position
            else:
                out[k] = _skeleton(v, sub, copied, slot_types)
        return out
    if isinstance(value, list) and value:
        return [_skeleton(v, f"{key}/{i}", copied, slot_types) for i, v in enumerate(value)]
    if key in copied:
        slot_types[key] = value_type(value)
        return [SLOT, key]
    return value


def frame_of(tree: dict[str, Any], copied: dict[str, Any]
             ) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The frame's identity (canonical JSON, optional object slots left out), its tree with
    slot markers, and its slots' value types."""
    slot_types: dict[str, str] = {}
    content = (_skeleton(tree["content"], "content", copied, slot_types)
               if tree["content"] is not None else None)
    seen: Counter[str] = Counter()
    calls = []
    for call in tree["calls"]:
        n = seen[call["name"]]
        seen[call["name"]] += 1
        calls.append({"name": call["name"], "arguments": _skeleton(
            call["arguments"], f"{call['name']}#{n}", copied, slot_types)})
    full = {"content": content, "json": tree["json"], "calls": calls}
    ident = {"content": _drop_object_slots(content), "json": tree["json"],
             "calls": [{"name": c["name"], "arguments": _drop_object_slots(c["arguments"])}
                       for c in calls]}
    return json.dumps(ident, sort_keys=True), full, slot_types


def _drop_object_slots(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_object_slots(v) for k, v in value.items() if not _is_slot(v)}
    if isinstance(value, list) and not _is_slot(value):
        return [_drop_object_slots(v) for v in value]
    return value


def merge(a: Any, b: Any) -> Any:
    """Two trees of one frame: the union of their optional object slots, first order kept."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = {k: merge(v, b[k]) if k in b else v for k, v in a.items()}
        out.update({k: v for k, v in b.items() if k not in a})
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and not _is_slot(a):
        return [merge(x, y) for x, y in zip(a, b, strict=True)]
    return a
