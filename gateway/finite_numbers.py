"""JSON schemas rewritten so that every number a student may write is finite to every client.

llguidance writes an unbounded JSON number as `-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?`:
`309E71388`, or 400 digits, which orjson rejects and Python's json and `JSON.parse` read as
infinity. Given both bounds it writes plain decimals in that range instead (no exponent), so
every number position of a `%json` schema gets bounds within ±MAX_NUMBER, and every position
that takes any value takes an any-value whose numbers are bounded the same way.
"""

from __future__ import annotations

from typing import Any

# The largest integer part a student may write: JavaScript's largest safe integer, which
# every client reads exactly. Fractions are free (they cannot overflow); exponents are not
# written at all (a bounded llguidance number has none): `1e-7` is written `0.0000001`.
MAX_NUMBER = 2**53 - 1
# For a schema whose own range lies beyond ±MAX_NUMBER. llguidance builds range regexes on
# 64-bit integers, so no bound can go further; a range beyond this one is left as written.
_FAR_NUMBER = 10**18
ANY_VALUE = "slimgate_json_value"  # the $defs name of the bounded any-value
_ANY_REF = {"$ref": f"#/$defs/{ANY_VALUE}"}
_ANY_DEF = {"anyOf": [
    {"type": "null"}, {"type": "boolean"}, {"type": "string"},
    {"type": "number", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER},
    {"type": "array", "items": _ANY_REF},
    {"type": "object", "additionalProperties": _ANY_REF},
]}
_TYPES = ["null", "boolean", "number", "string", "array", "object"]
_APPLICATORS = ("allOf", "anyOf", "oneOf", "$ref")  # combined with their siblings by intersection
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment",
                          "deprecated", "readOnly", "writeOnly", "$schema", "$id", "$anchor",
                          "$defs", "definitions", "x-guidance"})
_VALUES = ("enum", "const")  # a node held to given values takes no any-value
_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_MAPS = ("properties", "$defs", "definitions", "patternProperties")
# Not `not`, `if`, `then`, `else`: bounding a number under `not` would widen the schema (and
# llguidance, lenient, ignores them).


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bound(node: dict[str, Any], keys: tuple[str, str], pick: Any) -> float | None:
    found = [node[k] for k in keys if _is_number(node.get(k))]
    return pick(found) if found else None


def _clamp(node: dict[str, Any]) -> None:
    """Close a number or integer node's range at ±MAX_NUMBER (±_FAR_NUMBER for a schema
    that asks for numbers beyond that); a bound of its own inside that range is kept.
    llguidance takes the tighter of `minimum` and `exclusiveMinimum` (and of the maxima)."""
    low = _bound(node, ("minimum", "exclusiveMinimum"), max)
    high = _bound(node, ("maximum", "exclusiveMaximum"), min)
    for limit in (MAX_NUMBER, _FAR_NUMBER):
        if (low is None or low < limit) and (high is None or high > -limit):
            if low is None or low < -limit:
                node["minimum"] = -limit
            if high is None or high > limit:
                node["maximum"] = limit
            return


def _types(node: dict[str, Any]) -> set[str] | None:
    kind = node.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {k for k in kind if isinstance(k, str)}
    return None


def _intersects(schema: Any) -> bool:
    """Does llguidance intersect two subschemas anywhere in `schema` (`allOf`, or `anyOf`,
    `oneOf`, `$ref` beside other constraints)? Intersecting two recursive any-values never
    ends ("Schema intersection stack level exceeded"), so such a schema takes none."""
    if isinstance(schema, list):
        return any(_intersects(s) for s in schema)
    if not isinstance(schema, dict):
        return False
    applied = [k for k in _APPLICATORS if k in schema]
    all_of = schema.get("allOf")
    constraints = set(schema) - _ANNOTATIONS - set(_APPLICATORS)
    if (isinstance(all_of, list) and len(all_of) > 1) or len(applied) > 1 or (
            applied and constraints):
        return True
    return any(_intersects(v) for k, v in schema.items() if k not in _VALUES)


def finite_numbers(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` for the grammar: every number it admits is finite to orjson, Python's json
    and `JSON.parse`, and lies within ±MAX_NUMBER where the schema's own range allows.

    Number and integer nodes get bounds. Where any value may stand (`true`, `{}`, a missing
    `items` or `additionalProperties`, a node with no `type`), a bounded any-value stands
    instead — except in a schema that intersects subschemas (`_intersects`): there only the
    typed numbers are bounded, and the contract check still rejects a non-finite number.
    """
    any_ok = not _intersects(schema)
    used = False

    def any_value() -> dict[str, Any]:
        nonlocal used
        used = True
        return dict(_ANY_REF)

    def walk(node: Any) -> Any:
        if node is True or node == {}:
            return any_value() if any_ok else node
        if not isinstance(node, dict):
            return node
        out = dict(node)
        for key in _LISTS:
            if isinstance(out.get(key), list):
                out[key] = [walk(s) for s in out[key]]
        for key in _MAPS:
            if isinstance(out.get(key), dict):
                out[key] = {k: walk(s) for k, s in out[key].items()}
        for key in ("items", "additionalItems", "additionalProperties"):
            if isinstance(out.get(key), list):
                out[key] = [walk(s) for s in out[key]]
            elif key in out:
                out[key] = walk(out[key])
        types = _types(out)
        if types is None:
            if not any_ok or any(k in out for k in (*_APPLICATORS, *_VALUES)):
                return out
            if not set(out) - _ANNOTATIONS:
                return any_value()
            out["type"], types = list(_TYPES), set(_TYPES)
        if types & {"number", "integer"}:
            _clamp(out)
        if any_ok and "object" in types and "additionalProperties" not in out:
            out["additionalProperties"] = any_value()
        if any_ok and "array" in types and "items" not in out:
            out["items"] = any_value()
        return out

    bounded = walk(schema)
    if used:
        defs = bounded.get("$defs")
        bounded["$defs"] = {**(defs if isinstance(defs, dict) else {}), ANY_VALUE: _ANY_DEF}
    return bounded  # type: ignore[no-any-return]
