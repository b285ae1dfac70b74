"""Student vs teacher answers per output kind: agreement, partial scores, validity, reasons."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.compare import COMPARATORS, NotComparable, compare, normalize_label, texts_identical


def text(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def calls(*pairs: tuple[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": f"c{i}", "type": "function",
         "function": {"name": n, "arguments": a if isinstance(a, str) else json.dumps(a)}}
        for i, (n, a) in enumerate(pairs)]}


# --- tool calls ---------------------------------------------------------------------------


def test_key_order_and_number_spelling_do_not_matter() -> None:
    c = compare("tool_call", calls(("f", '{"b": 1.0, "a": [1, {"y": 2, "x": 3}]}')),
                calls(("f", '{"a": [1, {"x": 3, "y": 2}], "b": 1}')))
    assert c.agree and c.valid and c.score == 1.0


def test_true_is_not_one() -> None:
    assert not compare("tool_call", calls(("f", {"on": 1})), calls(("f", {"on": True}))).agree


def test_parallel_calls_match_in_any_order() -> None:
    teacher = calls(("weather", {"city": "Paris"}), ("weather", {"city": "Oslo"}), ("now", {}))
    student = calls(("now", {}), ("weather", {"city": "Oslo"}), ("weather", {"city": "Paris"}))
    c = compare("tool_call", student, teacher)
    assert c.agree and c.detail == "3 calls match"


def test_calls_are_a_multiset() -> None:
    teacher = calls(("ping", {}), ("ping", {}))
    c = compare("tool_call", calls(("ping", {})), teacher)
    assert not c.agree and c.score == 0.5 and "missing call 'ping'" in c.detail


def test_differing_argument_is_named_with_both_values() -> None:
    c = compare("tool_call", calls(("weather", {"city": "Lyon", "unit": "C"})),
                calls(("weather", {"city": "Paris", "unit": "C"})))
    assert not c.agree and c.valid
    assert c.detail == """weather: argument 'city' differs: "Lyon" (student) vs "Paris" (teacher)"""
    assert c.score == pytest.approx(0.5)  # one of two arguments right


def test_missing_and_extra_arguments() -> None:
    teacher = calls(("f", {"a": {"b": 1, "c": 2}}))
    assert "argument 'a.c' missing" in compare("tool_call", calls(("f", {"a": {"b": 1}})),
                                               teacher).detail
    c = compare("tool_call", calls(("f", {"a": {"b": 1, "c": 2}, "z": 0})), teacher)
    assert "extra argument 'z'" in c.detail and 0 < c.score < 1


def test_wrong_function() -> None:
    c = compare("tool_call", calls(("search", {"q": "x"})), calls(("weather", {"city": "x"})))
    assert not c.agree and c.score == 0.0 and c.detail == "called 'search' instead of 'weather'"


def test_extra_call_costs_score() -> None:
    c = compare("tool_call", calls(("now", {}), ("now", {"tz": "UTC"})), calls(("now", {})))
    assert not c.agree and c.score == 0.5 and "extra call 'now'" in c.detail


def test_text_where_a_call_was_expected_is_wrong_shape() -> None:
    c = compare("tool_call", text("It is sunny."), calls(("weather", {"city": "x"})))
    assert (c.agree, c.valid, c.score) == (False, False, 0.0)


def test_unparsable_arguments_are_invalid_even_if_identical() -> None:
    c = compare("tool_call", calls(("f", '{"a":')), calls(("f", '{"a":')))
    assert not c.agree and not c.valid


def test_request_contract_makes_unknown_tools_invalid() -> None:
    request = {"tools": [{"type": "function", "function": {"name": "weather"}}]}
    c = compare("tool_call", calls(("delete_all", {})), calls(("weather", {})), request=request)
    assert not c.valid and c.detail.startswith("unknown_tool")


def test_teacher_text_turn_in_a_tool_task() -> None:
    final = text("Done: booked for Friday.")
    assert compare("tool_call", text("Done:  booked for Friday."), final).agree
    c = compare("tool_call", calls(("book", {})), final)
    assert not c.agree and not c.valid


# --- json ---------------------------------------------------------------------------------


def test_json_equal_regardless_of_order() -> None:
    c = compare("json", text('{"b": [1, 2], "a": 1.0}'), text('{"a": 1, "b": [1, 2]}'))
    assert c.agree and c.score == 1.0


def test_json_partial_score_is_leaf_f1() -> None:
    c = compare("json", text('{"name": "Ann", "age": 30, "city": "Oslo"}'),
                text('{"name": "Ann", "age": 31, "city": "Oslo", "zip": "0150"}'))
    assert not c.agree and c.valid
    assert c.score == pytest.approx(2 * 2 / (3 + 4))
    assert c.detail == "field 'age' differs: 30 (student) vs 31 (teacher)"


def test_fenced_json_is_invalid() -> None:
    c = compare("json", text('```json\n{"a": 1}\n```'), text('{"a": 1}'))
    assert (c.agree, c.valid, c.score) == (False, False, 0.0) and "fenced" in c.detail


def test_json_schema_violation_never_agrees() -> None:
    request = {"response_format": {"type": "json_schema", "json_schema": {"schema": {
        "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}}
    c = compare("json", text('{"n": "3"}'), text('{"n": "3"}'), request=request)
    assert not c.agree and not c.valid and c.detail.startswith("invalid_json")


def test_teacher_not_json_is_not_comparable() -> None:
    with pytest.raises(NotComparable):
        compare("json", text("{}"), text("Sorry, I can't."))


def test_tool_call_where_json_was_expected() -> None:
    c = compare("json", calls(("f", {})), text("{}"))
    assert (c.agree, c.valid, c.score) == (False, False, 0.0)


# --- label and text -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["positive", " Positive. ", '"POSITIVE"', "'positive'!", "positive\n", "«Positive»"]
)
def test_label_normalisation(raw: str) -> None:
    assert normalize_label(raw) == "positive"
    assert compare("label", text(raw), text("Positive")).agree


def test_label_mismatch_and_whitespace_inside() -> None:
    assert compare("label", text("very   good"), text("Very good")).agree
    c = compare("label", text("negative"), text("positive"))
    assert (c.agree, c.score) == (False, 0.0) and "'negative' (student)" in c.detail
    assert not compare("label", text("..."), text("positive")).valid


def test_text_needs_a_similarity() -> None:
    with pytest.raises(ValueError, match="similarity"):
        compare("text", text("Hi there"), text("Hello"))


def test_identical_text_needs_no_embedding() -> None:
    assert texts_identical("a  b\n", " a b")
    assert not texts_identical("a b", "a c")
    c = compare("text", text("Hello\nworld"), text("Hello world"))
    assert c.agree and c.score == 1.0


def test_text_threshold() -> None:
    assert compare("text", text("a"), text("b"), similarity=0.9).agree
    c = compare("text", text("a"), text("b"), similarity=0.8, text_threshold=0.85)
    assert not c.agree and c.score == pytest.approx(0.8) and "0.80 < 0.85" in c.detail
    assert compare("text", text("a"), text("b"), similarity=-0.2).score == 0.0


def test_every_output_kind_has_a_comparator() -> None:
    from policies.output_kinds import KINDS

    assert set(COMPARATORS) == set(KINDS)


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown output kind"):
        compare("image", text("a"), text("a"))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=12,
)


@given(JSON)
def test_any_json_agrees_with_itself_reserialised(value: Any) -> None:
    shuffled = json.dumps(value, indent=1)  # other whitespace; same value
    c = compare("json", text(json.dumps(value, sort_keys=True)), text(shuffled))
    assert c.agree and c.score == 1.0


@given(JSON, JSON)
def test_scores_stay_in_range_and_agreement_means_full_score(a: Any, b: Any) -> None:
    c = compare("json", text(json.dumps(a)), text(json.dumps(b)))
    assert 0.0 <= c.score <= 1.0
    assert c.agree == (c.score == 1.0)
