"""The request contract a student answer must honour before it reaches the client."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.contract import check_contract, parse_json
from policies.schema import _validator

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "email": {"type": "string", "format": "email"},
        "address": {"type": "object", "properties": {"city": {"type": "string"}},
                    "required": ["city"], "additionalProperties": False},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
SCHEMA_REQ = {"response_format": {"type": "json_schema",
                                  "json_schema": {"name": "person", "schema": PERSON}}}
WEATHER = {"type": "function", "function": {
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
TOOLS_REQ: dict[str, Any] = {"tools": [WEATHER, {"type": "function", "function": {"name": "now"}}]}


def text(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def call(name: str, arguments: Any, content: str | None = None) -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"role": "assistant", "content": content, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": name, "arguments": args}}]}


def code(request: dict[str, Any], message: dict[str, Any]) -> str | None:
    v = check_contract(request, message)
    return v.code if v else None


def test_plain_answer_without_contract_passes() -> None:
    assert check_contract({}, text("Hello")) is None


@pytest.mark.parametrize("message", [text(None), text(""), text("  \n"), {"role": "assistant"}])
def test_empty_answer(message: dict[str, Any]) -> None:
    assert code({}, message) == "empty"


@pytest.mark.parametrize("content,expected", [
    ('{"a": 1}', None), (' {"a": 1}\n', None), ("[1, 2]", "invalid_json"),
    ("not json", "invalid_json"), ('```json\n{"a": 1}\n```', "invalid_json"),
    ('{"a": NaN}', "invalid_json"), ('{"a": 1} trailing', "invalid_json"),
])
def test_json_object_mode(content: str, expected: str | None) -> None:
    assert code({"response_format": {"type": "json_object"}}, text(content)) == expected


@pytest.mark.parametrize("number,finite", [
    ("1e308", True), ("-1.7976931348623157e308", True), ("1e-400", True), ("9" * 308, True),
    ("0." + "1" * 400, True), ("1e309", False), ("-1e309", False), ("309E71388", False),
    ("2" + "0" * 308, False), ("1" + "0" * 400, False), ("-" + "1" * 5000, False),
])
def test_a_number_that_overflows_a_double_is_not_json(number: str, finite: bool) -> None:
    """orjson rejects it, JSON.parse and Python's json read Infinity (and write it back as a
    bare `Infinity`): no client can use it, so no answer may hold one (content or call)."""
    want = None if finite else "invalid_json"
    assert code({"response_format": {"type": "json_object"}}, text(f'{{"a": {number}}}')) == want
    assert code(TOOLS_REQ, call("get_weather", f'{{"city": "Oslo", "n": {number}}}')) == (
        None if finite else "bad_arguments")
    if not finite:
        with pytest.raises(ValueError, match="overflows"):
            parse_json(f"[{number}]", exact=True)  # comparisons read exactly, same rule


def test_json_schema_valid_answer() -> None:
    answer = {"name": "Ann", "age": 31, "address": {"city": "Paris"}}
    assert check_contract(SCHEMA_REQ, text(json.dumps(answer))) is None


@pytest.mark.parametrize("answer,where", [
    ({"name": "Ann"}, "'age' is a required property"),
    ({"name": "Ann", "age": -1}, "age: -1 is less than the minimum"),
    ({"name": "Ann", "age": 3, "address": {"city": 7}}, "address/city"),
    ({"name": "Ann", "age": 3, "extra": 1}, "Additional properties"),
])
def test_json_schema_violations_say_where(answer: dict[str, Any], where: str) -> None:
    v = check_contract(SCHEMA_REQ, text(json.dumps(answer)))
    assert v is not None and v.code == "invalid_json" and where in v.message


def test_format_keywords_are_not_checked() -> None:
    answer = {"name": "Ann", "age": 3, "email": "not an email"}
    assert check_contract(SCHEMA_REQ, text(json.dumps(answer))) is None


def test_a_broken_client_schema_is_not_held_against_the_student() -> None:
    req = {"response_format": {"type": "json_schema",
                               "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}}
    assert check_contract(req, text('{"a": 1}')) is None
    assert code(req, text("no json")) == "invalid_json"


def test_validators_are_cached_by_canonical_schema() -> None:
    before = _validator.cache_info()
    reordered = json.loads(json.dumps(PERSON, sort_keys=True))  # same schema, other key order
    reordered = dict(reversed(list(reordered.items())))
    for schema in (PERSON, reordered):
        req = {"response_format": {"type": "json_schema", "json_schema": {"schema": schema}}}
        check_contract(req, text('{"name": "a", "age": 1}'))
    after = _validator.cache_info()
    assert after.currsize - before.currsize <= 1 and after.hits > before.hits


def test_tool_call_with_good_arguments() -> None:
    assert check_contract(TOOLS_REQ, call("get_weather", {"city": "Paris"})) is None
    assert check_contract(TOOLS_REQ, call("now", {"anything": 1})) is None  # no schema


@pytest.mark.parametrize("message,expected,says", [
    (call("get_time", {}), "unknown_tool", "'get_time'"),
    (call("get_weather", '{"city": '), "bad_arguments", "not valid JSON"),
    (call("get_weather", "[1]"), "bad_arguments", "not a JSON object"),
    (call("get_weather", {"town": "Paris"}), "bad_arguments", "'city' is a required property"),
    (call("get_weather", {"city": 3}), "bad_arguments", "city: 3 is not of type 'string'"),
])
def test_tool_call_violations(message: dict[str, Any], expected: str, says: str) -> None:
    v = check_contract(TOOLS_REQ, message)
    assert v is not None and v.code == expected and says in v.message


def test_tool_call_without_any_tools_is_unknown() -> None:
    assert code({}, call("get_weather", {"city": "x"})) == "unknown_tool"


@pytest.mark.parametrize("choice,message,expected", [
    ("none", call("get_weather", {"city": "x"}), "tool_choice"),
    ("none", text("sunny"), None),
    ("required", text("sunny"), "tool_choice"),
    ("required", call("now", {}), None),
    ({"type": "function", "function": {"name": "now"}}, call("get_weather", {"city": "x"}),
     "tool_choice"),
    ({"type": "function", "function": {"name": "now"}}, text("sunny"), "tool_choice"),
    ({"type": "function", "function": {"name": "now"}}, call("now", {}), None),
    ({"type": "allowed_tools", "allowed_tools": {
        "mode": "required", "tools": [{"type": "function", "function": {"name": "now"}}]}},
     call("get_weather", {"city": "x"}), "tool_choice"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": []}},
     text("sunny"), "tool_choice"),
])
def test_tool_choice(choice: Any, message: dict[str, Any], expected: str | None) -> None:
    assert code({**TOOLS_REQ, "tool_choice": choice}, message) == expected


def test_commentary_beside_tool_calls_is_not_held_to_json_mode() -> None:
    req = {**TOOLS_REQ, "response_format": {"type": "json_object"}}
    assert check_contract(req, call("now", {}, content="Let me check the time.")) is None


def test_legacy_function_calling() -> None:
    req = {"functions": [WEATHER["function"]], "function_call": {"name": "get_weather"}}
    good = {"role": "assistant", "content": None,
            "function_call": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    assert check_contract(req, good) is None
    assert code(req, text("sunny")) == "tool_choice"


def test_content_parts_are_read_as_text() -> None:
    parts = [{"type": "text", "text": '{"a":'}, {"type": "text", "text": " 1}"}]
    assert check_contract({"response_format": {"type": "json_object"}}, text(parts)) is None


def test_violation_reads_as_code_and_message() -> None:
    assert str(check_contract({}, text(""))) == "empty: no content and no tool calls"


JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.sampled_from(["function", "custom", "none", "required", "json_object", "json_schema",
                       "allowed_tools", "get_weather", '{"city": "x"}']),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["type", "function", "custom", "name", "arguments", "parameters",
                         "json_schema", "schema", "tools", "mode", "allowed_tools", "input"]),
        inner, max_size=4),
    max_leaves=15,
)
KEYS = ["tools", "functions", "tool_choice", "function_call", "response_format"]


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(KEYS), JUNK),
       st.dictionaries(st.sampled_from(["content", "tool_calls", "function_call"]), JUNK))
def test_hostile_requests_and_answers_never_crash(request: dict[str, Any],
                                                  message: dict[str, Any]) -> None:
    v = check_contract(request, message)
    assert v is None or v.code in {"invalid_json", "unknown_tool", "bad_arguments",
                                   "tool_choice", "empty"}


@pytest.mark.parametrize("request_,message,code", [
    ({"response_format": {"type": "json_schema", "json_schema": "x"}}, text("{}"), None),
    ({"response_format": "json"}, text("{}"), None),
    ({"tool_choice": {"type": "allowed_tools", "allowed_tools": [1]}}, text("x"), None),
    ({"tool_choice": {"function": "f"}}, text("x"), None),
    ({"tool_choice": []}, text("x"), None),
    # a malformed tool offers nothing: calling it is calling an unknown tool
    ({"tools": [{"type": "function", "function": "f"}, "junk"]}, call("f", {}), "unknown_tool"),
    ({"tools": "x", "functions": [{"name": "f", "parameters": "zz"}]}, call("f", {}), None),
    ({}, text(5), None),
    ({}, text([{"text": 5}, "junk"]), None),
    ({}, {"content": "hi", "tool_calls": "zz"}, None),
    ({}, {"content": None, "tool_calls": [{"function": "f"}]}, "unknown_tool"),
])
def test_malformed_fields_are_judged_not_crashed_on(request_: dict[str, Any],
                                                   message: dict[str, Any],
                                                   code: str | None) -> None:
    v = check_contract(request_, message)
    assert (v.code if v else None) == code
