"""The schema rewrite that keeps every number a student may write finite to every client.

Pure: no llguidance. What llguidance then admits is tested in `test_constrain.py`.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.finite_numbers import ANY_VALUE, MAX_NUMBER, finite_numbers

ANY = {"$ref": f"#/$defs/{ANY_VALUE}"}


def test_an_open_number_gets_both_bounds() -> None:
    assert finite_numbers({"type": "number"}) == {
        "type": "number", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER}
    # one bound of its own still leaves the digits open-ended: the other one is added
    assert finite_numbers({"type": "integer", "minimum": 1}) == {
        "type": "integer", "minimum": 1, "maximum": MAX_NUMBER}
    assert finite_numbers({"type": ["integer", "null"], "exclusiveMaximum": 0}) == {
        "type": ["integer", "null"], "exclusiveMaximum": 0, "minimum": -MAX_NUMBER}


@pytest.mark.parametrize("schema,added", [
    ({"type": "integer", "minimum": 0, "maximum": 99}, {}),  # its own range, kept
    ({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, {}),
    ({"type": "number", "minimum": -1e300, "maximum": 1e300},
     {"minimum": -MAX_NUMBER, "maximum": MAX_NUMBER}),
    ({"type": "number", "exclusiveMinimum": -1e300}, {"minimum": -MAX_NUMBER,
                                                      "maximum": MAX_NUMBER}),
    ({"type": "integer", "minimum": 10**17}, {"maximum": 10**18}),  # beyond: farther bound
    ({"type": "integer", "exclusiveMinimum": MAX_NUMBER}, {"maximum": 10**18}),
    ({"type": "number", "maximum": -1e16}, {"minimum": -10**18}),
])
def test_a_range_of_its_own_is_kept_inside_the_bounds(schema: dict[str, Any],
                                                      added: dict[str, Any]) -> None:
    assert finite_numbers(schema) == {**schema, **added}


def test_a_range_no_grammar_can_bound_is_left_as_written() -> None:
    schema = {"type": "integer", "minimum": 1e20}  # llguidance builds ranges on 64-bit ints
    assert finite_numbers(schema) == schema


@pytest.mark.parametrize("schema", [
    {"type": "object"},
    {"type": "object", "additionalProperties": True},
])
def test_free_object_values_take_the_bounded_any_value(schema: dict[str, Any]) -> None:
    out = finite_numbers(schema)
    assert out["additionalProperties"] == ANY
    bounded = out["$defs"][ANY_VALUE]["anyOf"]
    assert {"type": "number", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER} in bounded
    assert {"type": "array", "items": ANY} in bounded  # and so on, at any depth
    assert {"type": "object", "additionalProperties": ANY} in bounded


def test_every_position_that_takes_any_value_takes_the_bounded_one() -> None:
    schema = {"type": "object", "properties": {
        "a": {}, "b": True, "c": {"description": "anything"}, "d": {"type": "array"},
        "e": {"type": "array", "prefixItems": [{"type": "number"}]},
        "f": {"properties": {"x": {"type": "integer"}}},
    }, "additionalProperties": False}
    props = finite_numbers(schema)["properties"]
    assert props["a"] == props["b"] == props["c"] == ANY
    assert props["d"]["items"] == ANY
    assert props["e"]["items"] == ANY and props["e"]["prefixItems"][0]["maximum"] == MAX_NUMBER
    # no `type`: any type, so a number too (bounded), and its object keeps its properties
    assert props["f"]["type"] == ["null", "boolean", "number", "string", "array", "object"]
    assert props["f"]["maximum"] == MAX_NUMBER and props["f"]["additionalProperties"] == ANY
    assert props["f"]["properties"]["x"]["maximum"] == MAX_NUMBER


def test_given_values_references_and_negations_are_left_alone() -> None:
    schema = {"type": "object", "properties": {
        "level": {"enum": ["low", 1e400]}, "tag": {"const": "x"},
        "ref": {"$ref": "#/$defs/Item", "description": "an item"},
        "not_a_number": {"not": {"type": "number"}},
    }, "required": ["level"], "additionalProperties": False,
        "$defs": {"Item": {"type": "object", "properties": {"n": {"type": "number"}}}}}
    out = finite_numbers(schema)
    for key in ("level", "tag", "ref"):
        assert out["properties"][key] == schema["properties"][key]  # type: ignore[index]
    assert out["properties"]["not_a_number"]["not"] == {"type": "number"}  # bounding it widens
    item = out["$defs"]["Item"]  # a referenced definition is bounded where it is defined
    assert item["properties"]["n"]["maximum"] == MAX_NUMBER
    assert item["additionalProperties"] == ANY and ANY_VALUE in out["$defs"]


def test_a_schema_that_intersects_keeps_llguidance_own_any_values() -> None:
    """llguidance intersects allOf branches (and anyOf/oneOf/$ref beside other keywords);
    two recursive any-values never finish intersecting, so such a schema gets none."""
    schema = {"allOf": [
        {"type": "object", "properties": {"n": {"type": "number"}}},
        {"type": "object", "properties": {"m": {"type": "integer"}, "free": {}}},
    ]}
    out = finite_numbers(schema)
    assert "$defs" not in out and "additionalProperties" not in out["allOf"][0]
    assert out["allOf"][1]["properties"]["free"] == {}
    assert out["allOf"][0]["properties"]["n"]["maximum"] == MAX_NUMBER  # typed: still bounded
    assert out["allOf"][1]["properties"]["m"]["minimum"] == -MAX_NUMBER
    one_of = {"type": "object", "properties": {"a": {}}, "anyOf": [{"required": ["a"]}]}
    assert finite_numbers(one_of)["properties"]["a"] == {}


def test_the_schema_given_is_not_changed() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "number"}, "a": {}},
              "$defs": {"X": {"type": "integer"}}}
    before = copy.deepcopy(schema)
    finite_numbers(schema)
    assert schema == before
