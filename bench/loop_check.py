"""What the loop benchmark checks in each answer a client received, independently of slimgate.

`violation` holds an assistant message to its request's own contract with `jsonschema`
(tool names, tool arguments against their parameter schema, `tool_choice`, a `json_schema`
or `json_object` response format), not with slimgate's checker, so a bug there cannot hide
here. `matches_gold` says whether the answer is the public gold answer.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError


def _valid(schema: Any, value: Any) -> str | None:
    if not isinstance(schema, dict):
        return None
    try:
        error = next(iter(Draft202012Validator(schema).iter_errors(value)), None)
    except SchemaError as e:
        return f"unusable schema: {e.message}"
    return None if error is None else error.message


def _object(text: Any) -> dict[str, Any] | None:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def violation(request: dict[str, Any], message: dict[str, Any]) -> str | None:
    """Why `message` breaks what `request` asked for, or None when it honours it."""
    calls = message.get("tool_calls") or []
    specs = {(t.get("function") or {}).get("name"): (t.get("function") or {}).get("parameters")
             for t in request.get("tools") or []}
    choice = request.get("tool_choice")
    if calls:
        if not specs or choice == "none":
            return "a tool call where none was allowed"
        for call in calls:
            fn = call.get("function") or {}
            name = fn.get("name")
            if name not in specs:
                return f"unknown tool {name!r}"
            if isinstance(choice, dict) and (choice.get("function") or {}).get("name") != name:
                return f"tool {name!r} where tool_choice named another"
            args = _object(fn.get("arguments"))
            if args is None:
                return f"{name}: arguments are not a JSON object"
            problem = _valid(specs[name], args)
            if problem:
                return f"{name}: {problem}"
        return None
    if choice == "required" or isinstance(choice, dict):
        return "no tool call where one was required"
    fmt = request.get("response_format") or {}
    if fmt.get("type") in ("json_schema", "json_object"):
        value = _object(message.get("content"))
        if value is None:
            return "content is not a JSON object"
        if fmt["type"] == "json_schema":
            problem = _valid((fmt.get("json_schema") or {}).get("schema"), value)
            if problem:
                return f"content: {problem}"
    return None


def _canonical(message: dict[str, Any]) -> Any:
    calls = message.get("tool_calls") or []
    if calls:
        return [((c.get("function") or {}).get("name"),
                 _object((c.get("function") or {}).get("arguments"))) for c in calls]
    content = message.get("content")
    as_json = _object(content)
    if as_json is not None:
        return as_json
    return " ".join(str(content or "").split())


def matches_gold(message: dict[str, Any], gold: dict[str, Any]) -> bool:
    """The same tool calls with the same arguments, the same JSON, or the same text."""
    return bool(_canonical(message) == _canonical(gold))
