"""Does an assistant message honour its request's own contract? Runs on the request path.

The contract is what the client asked for: `response_format` (JSON object or JSON schema),
`tools` and their parameter schemas, `tool_choice`. A student answer that breaks it falls
back to the teacher inside the same request. Schemas are checked by `policies.schema`:
offline (no `$ref` is fetched) and with time-bounded regexes; the gateway runs this module
in a worker thread with a deadline, so no contract can stall its event loop.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from policies.schema import SchemaUnverifiable, pattern_problem, schema_error

# "unverifiable": the answer cannot be checked within bounds (a remote $ref, a regex that
# runs too long), so it is not trusted.
ViolationCode = Literal[
    "invalid_json", "unknown_tool", "bad_arguments", "tool_choice", "empty", "unverifiable"
]


@dataclass(frozen=True, slots=True)
class Violation:
    code: ViolationCode  # stable, for metrics and fallback reasons
    message: str  # short human explanation

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call from an assistant message, arguments still as the raw string."""

    name: str
    arguments: str


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The dict items of a list field; anything else in a hostile request is ignored."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def assistant_content(message: dict[str, Any]) -> str | None:
    """The content of an assistant message as one string (text parts joined), or None."""
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in _dicts(content))
    return str(content)


def _call(name: Any, arguments: Any) -> ToolCall:
    return ToolCall(str(name or ""), arguments if isinstance(arguments, str) else "")


def tool_calls(message: dict[str, Any]) -> list[ToolCall]:
    """The calls of an assistant message: `tool_calls`, or the legacy `function_call`."""
    calls = []
    for call in _dicts(message.get("tool_calls")):
        fn = call.get("function") or call.get("custom")
        if isinstance(fn, dict):
            calls.append(_call(fn.get("name"), fn.get("arguments", fn.get("input"))))
        else:
            calls.append(_call(None, None))
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        calls.append(_call(legacy.get("name"), legacy.get("arguments")))
    return calls


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:40]} overflows a 64-bit float")
    return value


def _finite_int(text: str) -> int:
    if len(text) > 308 and math.isinf(float(text)):  # 308 digits or fewer: below 10**308
        raise ValueError(f"{text[:40]}... overflows a 64-bit float")
    return int(text)


def parse_json(text: str, *, exact: bool = False) -> Any:
    """Strict JSON: no fences, no trailing prose, no NaN, no number that overflows a 64-bit
    float (`1e400`, 400 digits: orjson rejects it, `JSON.parse` reads Infinity). ValueError
    when it does not parse.

    The fast path is orjson, which reads integers beyond 64 bits as floats; `exact=True`
    uses the json module, which keeps them exact (comparisons want that, validation not).
    """
    if not exact:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # orjson also rejects some valid JSON (a lone surrogate escape): json decides
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                      parse_int=_finite_int)


def _name(tool: dict[str, Any]) -> str:
    """The name of a tool, tool choice or allowed tool, in any of OpenAI's spellings."""
    inner = tool.get("function") or tool.get("custom") or tool
    return str(inner.get("name") or "") if isinstance(inner, dict) else ""


def _declared_tools(request: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """(function name → its parameters schema or None, names of free-text custom tools)."""
    functions: dict[str, Any] = {}
    custom: set[str] = set()
    for tool in _dicts(request.get("tools")):
        if tool.get("type", "function") == "function":
            functions[_name(tool)] = _dict(tool.get("function")).get("parameters")
        elif tool.get("type") == "custom":
            custom.add(_name(tool))
    for fn in _dicts(request.get("functions")):  # legacy function calling
        functions[_name(fn)] = fn.get("parameters")
    return functions, custom


def request_schemas(request: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(param, schema) of every JSON schema a chat request carries, for up-front checks."""
    fmt = _dict(request.get("response_format"))
    if fmt.get("type") == "json_schema":
        yield "response_format.json_schema.schema", _dict(fmt.get("json_schema")).get("schema")
    for i, tool in enumerate(request.get("tools") or []):
        if isinstance(tool, dict):
            yield f"tools[{i}].function.parameters", _dict(tool.get("function")).get("parameters")
    for i, fn in enumerate(request.get("functions") or []):
        if isinstance(fn, dict):
            yield f"functions[{i}].parameters", fn.get("parameters")


def request_pattern_problem(request: dict[str, Any]) -> tuple[str, str] | None:
    """(param, why) for the first schema pattern in the request that does not compile."""
    for param, schema in request_schemas(request):
        problem = pattern_problem(schema)
        if problem is not None:
            return f"{param}.{problem[0]}", problem[1]
    return None


def _schema_error(schema: Any, instance: Any) -> str | Violation | None:
    try:
        return schema_error(schema, instance)
    except SchemaUnverifiable as e:
        return Violation("unverifiable", str(e)[:300])


def _check_tool_choice(request: dict[str, Any], names: list[str]) -> Violation | None:
    choice = request.get("tool_choice", request.get("function_call"))
    if choice == "none" and names:
        return Violation("tool_choice", f"tool_choice is 'none' but the answer calls {names[0]!r}")
    if choice == "required" and not names:
        return Violation("tool_choice", "tool_choice is 'required' but the answer calls no tool")
    if not isinstance(choice, dict):
        return None
    if choice.get("type") == "allowed_tools":
        allowed = _dict(choice.get("allowed_tools"))
        if allowed.get("mode") == "required" and not names:
            return Violation("tool_choice", "allowed_tools mode is 'required' but no tool called")
        permitted = {_name(t) for t in _dicts(allowed.get("tools"))}
        bad = [n for n in names if n not in permitted]
        return Violation("tool_choice", f"{bad[0]!r} is not in allowed_tools") if bad else None
    wanted = _name(choice)
    if wanted and (not names or any(n != wanted for n in names)):
        got = ", ".join(repr(n) for n in names) or "no tool"
        return Violation("tool_choice", f"tool_choice requires {wanted!r}, answer calls {got}")
    return None


def _check_calls(request: dict[str, Any], calls: list[ToolCall]) -> Violation | None:
    functions, custom = _declared_tools(request)
    for call in calls:
        if call.name in custom:
            continue  # custom tools take free text
        if call.name not in functions:
            return Violation("unknown_tool", f"{call.name!r} is not among the request's tools")
        try:
            args = parse_json(call.arguments)
        except ValueError:
            return Violation("bad_arguments", f"{call.name}: arguments are not valid JSON")
        if not isinstance(args, dict):
            return Violation("bad_arguments", f"{call.name}: arguments are not a JSON object")
        problem = _schema_error(functions[call.name], args)
        if isinstance(problem, Violation):
            return problem
        if problem:
            return Violation("bad_arguments", f"{call.name}: {problem}")
    return None


def _check_format(request: dict[str, Any], text: str) -> Violation | None:
    fmt = _dict(request.get("response_format"))
    kind = fmt.get("type")
    if kind not in ("json_object", "json_schema"):
        return None
    try:
        value = parse_json(text)
    except ValueError:
        return Violation("invalid_json", "content is not valid JSON")
    if kind == "json_object":
        if not isinstance(value, dict):
            return Violation("invalid_json", "content is JSON but not an object")
        return None
    problem = _schema_error(_dict(fmt.get("json_schema")).get("schema"), value)
    if isinstance(problem, Violation):
        return problem
    return Violation("invalid_json", f"does not match the schema: {problem}") if problem else None


def check_contract(request: dict[str, Any], message: dict[str, Any]) -> Violation | None:
    """None if `message` honours `request`'s contract, else the first violation found.

    Checks, in order: something was answered; tool_choice; each call's tool and arguments;
    the content against response_format (only for a final answer: a message that calls
    tools may carry free-text commentary beside the calls).
    """
    calls = tool_calls(message)
    text = assistant_content(message)
    if not calls and not (text and text.strip()):
        return Violation("empty", "no content and no tool calls")
    return (
        _check_tool_choice(request, [c.name for c in calls])
        or _check_calls(request, calls)
        or (_check_format(request, text) if text and not calls else None)
    )
