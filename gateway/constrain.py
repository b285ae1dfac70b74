"""The grammar of every answer a request allows, for constrained decoding of students.

A student writes its answer as ChatML/Hermes text (`distill/chat_format.py`): content, or
`<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>` blocks. `answer_grammar`
turns a request's own contract — `response_format`, `tools`, `tool_choice`,
`parallel_tool_calls` — into one llguidance Lark grammar over that text, with each JSON part
an inline `%json` schema. The embedded engine (`distill/constrained.py`) and vLLM's
`structured_outputs.grammar` both decode with it, so both engines follow the same rules.
Every JSON number the grammar admits is finite to every client (`gateway/finite_numbers.py`).
Pure Python, no llguidance import: the gateway builds grammars without torch.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gateway.finite_numbers import finite_numbers

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"

# Placeholders a student is asked with instead of copied values: copy slots (`<V1>`) and
# pseudonymized PII (`<EMAIL_1>`). They may stand where the answer copies a string.
PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*[0-9]+>")

# Tool calls are written by the chat template (`tojson`: ", " and ": ", nothing else), so
# their JSON is held to exactly that: what the student learnt, and no whitespace to loop
# on. Content JSON keeps the teacher's own layout, whatever it was: whitespace is free.
# `lenient`: schema keywords llguidance does not implement are ignored, not fatal (the
# contract check still validates the whole answer).
_CALL_JSON = {"lenient": True, "whitespace_flexible": False, "item_separator": ", ",
              "key_separator": ": "}
_CONTENT_JSON = {"lenient": True}
# A character Python's `str.strip` keeps: free text needs one, or the answer is empty.
# Rust's `\s` is Unicode White_Space; `str.isspace` also holds the separators \x1c-\x1f.
_VISIBLE = r"[^\s\x1c-\x1f]"
_STRING_LIMITS = ("pattern", "format", "minLength", "maxLength")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")


def format_instruction(response_format: Any) -> str | None:
    """The system-turn instruction that stands for a request's `response_format`.

    Students are trained and asked with it (both engines), so the prompt says what the
    grammar enforces.
    """
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return "Answer with a JSON object."
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema:
            compact = json.dumps(schema, ensure_ascii=False, separators=(",", ":"))
            return f"Answer with a JSON object matching this schema: {compact}"
        return "Answer with a JSON object."
    return None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_text(v.get("text") if isinstance(v, dict) else v) for v in value)
    return ""


def placeholders(request: dict[str, Any]) -> list[str]:
    """The placeholders in the request's messages, in order of first appearance."""
    found: dict[str, None] = {}
    for msg in request.get("messages") or []:
        if isinstance(msg, dict):
            for p in PLACEHOLDER.findall(_text(msg.get("content"))):
                found.setdefault(p, None)
    return list(found)


def open_to_placeholders(schema: Any, slots: list[str]) -> Any:
    """`schema` where a placeholder from `slots` may stand wherever a value is copied.

    String enums and consts also take the placeholders; constrained strings (pattern,
    format, length) become free strings, since a placeholder may sit inside one. The
    gateway's contract check still validates the answer after the values are put back.
    """
    if not slots or not isinstance(schema, dict):
        return schema
    out = dict(schema)
    values = out.pop("enum", None) if "enum" in out else None
    if "const" in out and isinstance(out["const"], str):
        values = [out.pop("const")]
    if isinstance(values, list):
        out["enum"] = values + [s for s in slots if s not in values] \
            if all(isinstance(v, str) for v in values) else values
    types = out.get("type")
    if types == "string" or (isinstance(types, list) and "string" in types):
        for key in _STRING_LIMITS:
            out.pop(key, None)
    for key in _SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [open_to_placeholders(s, slots) for s in out[key]]
    for key in _SUBSCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {k: open_to_placeholders(s, slots) for k, s in out[key].items()}
    for key in ("items", "additionalProperties", "not", "if", "then", "else"):
        if isinstance(out.get(key), dict):
            out[key] = open_to_placeholders(out[key], slots)
    numeric = {"number", "integer"} & set(types if isinstance(types, list) else [types])
    if numeric and not (isinstance(types, list) and "string" in types):
        # Copy slots stand for copied numbers too (an order's quantity): the student writes
        # the placeholder as a string, and it is put back as a number in the answer.
        return {"anyOf": [out, {"type": "string", "enum": list(slots)}]}
    return out


def _json(schema: dict[str, Any], options: dict[str, Any]) -> str:
    """An inline `%json` rule; its numbers are held to finite ones (`gateway.finite_numbers`)."""
    bounded = finite_numbers(schema)
    return "%json " + json.dumps({**bounded, "x-guidance": options}, ensure_ascii=False)


def _functions(request: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """Function name → parameters schema; None when a custom (free-text) tool is offered."""
    out: dict[str, dict[str, Any]] = {}
    for tool in request.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        if tool.get("type", "function") != "function":
            return None  # custom tools are free text, not Hermes JSON: leave them alone
        fn = tool.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("name"), str) and fn["name"]:
            params = fn.get("parameters")
            out[fn["name"]] = params if isinstance(params, dict) and params else {}
    return out


def _choice(request: dict[str, Any], names: list[str]) -> tuple[str, list[str]]:
    """(mode: none/auto/required, the callable tools) from `tool_choice`."""
    choice = request.get("tool_choice", "auto")
    if not names or choice == "none":
        return "none", []
    if choice == "required":
        return "required", names
    if isinstance(choice, dict):
        if choice.get("type") == "allowed_tools":
            allowed = choice.get("allowed_tools") or {}
            wanted = {(t.get("function") or t).get("name") for t in allowed.get("tools") or []
                      if isinstance(t, dict)}
            mode = "required" if allowed.get("mode") == "required" else "auto"
            return mode, [n for n in names if n in wanted]
        fn = choice.get("function") or {}
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str):
            return "required", [n for n in names if n == name]
    return "auto", names


def _content_schema(request: dict[str, Any]) -> dict[str, Any] | None:
    fmt = request.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        schema = ((fmt or {}).get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) and schema else {"type": "object"}
    return None


def _call_schema(name: str, params: dict[str, Any], slots: list[str]) -> dict[str, Any]:
    args = open_to_placeholders(params, slots) or {}
    if "type" not in args and not any(k in args for k in _SUBSCHEMA_LISTS):
        args = {**args, "type": "object"}
    return {"type": "object", "properties": {"name": {"const": name}, "arguments": args},
            "required": ["name", "arguments"], "additionalProperties": False}


def answer_grammar(request: dict[str, Any], *, tag_tokens: bool = False) -> str | None:
    """The Lark grammar of every answer `request` allows; None when any text is allowed.

    `tag_tokens`: the tokenizer has `<tool_call>` and `</tool_call>` as single added tokens
    (scratch students, Qwen), which llguidance matches only in `<token>` syntax.
    """
    functions = _functions(request)
    if functions is None:
        return None
    mode, callable_ = _choice(request, list(functions))
    content = _content_schema(request)
    if mode == "none" and content is None:
        return None
    if mode == "required" and not callable_:
        return 'start: ""'  # a tool_choice naming no offered tool: no answer satisfies it
    slots = placeholders(request)
    rules = []
    if content is not None:
        rules.append(f"content: {_json(open_to_placeholders(content, slots), _CONTENT_JSON)}")
    else:  # free text, which must not open a tool call the grammar did not shape
        rules.append("content: TEXT")
        rules.append(f"TEXT: /(.|\\n)*{_VISIBLE}(.|\\n)*/ & "
                     f"~/(.|\\n)*{re.escape(TOOL_CALL_OPEN)}(.|\\n)*/")
    if mode != "none":
        tools = [_call_schema(n, functions[n], slots) for n in callable_]
        one = tools[0] if len(tools) == 1 else {"anyOf": tools}
        tag_open, tag_close = ((f"{TOOL_CALL_OPEN}", f"{TOOL_CALL_CLOSE}") if tag_tokens else
                               (json.dumps(TOOL_CALL_OPEN), json.dumps(TOOL_CALL_CLOSE)))
        many = request.get("parallel_tool_calls") is not False
        rules.append('calls: call ("\\n" call)*' if many else "calls: call")
        rules.append(f'call: {tag_open} "\\n" {_json(one, _CALL_JSON)} "\\n" {tag_close}')
    start = {"none": "content", "auto": "content | calls", "required": "calls"}[mode]
    return "\n".join([f"start: {start}", *rules]) + "\n"
