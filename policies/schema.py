"""JSON-schema checks of untrusted schemas: offline, and with regexes that cannot hang.

Schemas come from clients (`response_format`, tool parameters). Validators are Draft
2020-12 with an empty `referencing.Registry`: a remote `$ref` is never fetched, it is
unresolvable. Every regex a schema applies (`pattern`, `patternProperties`, and the
patterns `additionalProperties` consults) runs on the `regex` engine with a timeout (it
also releases the GIL while matching). What cannot be checked within those bounds raises
`SchemaUnverifiable`; the caller decides (a student's answer then falls back). Pure: no
I/O, no asyncio; callers that must not block run it in a thread with a deadline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import regex
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from referencing import Registry
from referencing.exceptions import Unresolvable

# A pattern applied to one value gets this long. Backtracking patterns on short strings
# finish in microseconds; `^(a|aa)+$` on 60 characters needs ~10^12 steps in `re`.
REGEX_TIMEOUT_S = 0.05
# Keys whose values are data, not subschemas: never walked for patterns.
_DATA_KEYS = frozenset({"enum", "const", "default", "examples", "description", "title"})


class SchemaUnverifiable(Exception):
    """The schema cannot be checked here: a remote $ref, a too slow regex, a bad pattern."""


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    return regex.compile(pattern)


def _search(pattern: str, text: str) -> bool:
    try:
        return _compiled(pattern).search(text, timeout=REGEX_TIMEOUT_S) is not None
    except TimeoutError:
        raise SchemaUnverifiable(
            f"pattern {pattern[:60]!r} took over {REGEX_TIMEOUT_S}s on one value") from None
    except regex.error as e:
        raise SchemaUnverifiable(f"pattern {pattern[:60]!r} is invalid: {e}") from None


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, pp: dict[str, Any], instance: Any,
                        schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pp.items():
        for k, v in instance.items():
            if _search(pattern, k):
                yield from validator.descend(v, subschema, path=k, schema_path=pattern)


def _additional_properties(validator: Any, ap: Any, instance: Any,
                           schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    known = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [k for k in instance
              if k not in known and not any(_search(p, k) for p in patterns)]
    if validator.is_type(ap, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], ap, path=extra)
    elif not ap and extras:
        listed = ", ".join(repr(e) for e in sorted(extras))
        yield ValidationError(f"Additional properties are not allowed ({listed} unexpected)")


_Validator = validators.extend(Draft202012Validator, {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
})


def _walk(schema: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every subschema (a dict) with its JSON-pointer-like path; data values are skipped."""
    if isinstance(schema, dict):
        yield path, schema
        for key, value in schema.items():
            if key not in _DATA_KEYS:
                yield from _walk(value, f"{path}.{key}" if path else key)
    elif isinstance(schema, list):
        for i, item in enumerate(schema):
            yield from _walk(item, f"{path}[{i}]")


def pattern_problem(schema: Any) -> tuple[str, str] | None:
    """(where, why) of the first pattern in `schema` that does not compile, else None."""
    for where, node in _walk(schema, ""):
        found = [("pattern", node["pattern"])] if isinstance(node.get("pattern"), str) else []
        pp = node.get("patternProperties")
        if isinstance(pp, dict):
            found += [("patternProperties", p) for p in pp]
        for key, pattern in found:
            try:
                _compiled(pattern)
            except regex.error as e:
                return (f"{where}.{key}" if where else key), f"invalid regex {pattern[:60]!r}: {e}"
    return None


@lru_cache(maxsize=512)
def _validator(schema_json: str) -> Any:
    """A compiled validator for a canonical schema string; None if the schema itself is bad."""
    schema = json.loads(schema_json)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError:
        return None  # the client's schema is broken: nothing to hold the answer to
    nodes = [n for _, n in _walk(schema, "")]
    if any("unevaluatedProperties" in n for n in nodes) and any(
            "patternProperties" in n for n in nodes):
        # jsonschema evaluates these patterns itself, with `re` and no time bound.
        return False
    return _Validator(schema, registry=Registry())  # no retrieval: remote refs unresolvable


def schema_error(schema: Any, instance: Any) -> str | None:
    """None if `instance` validates against `schema` (Draft 2020-12, no format checks), else
    a short reason. Raises SchemaUnverifiable when it cannot be decided within the bounds."""
    if not isinstance(schema, dict) or not schema:
        return None
    validator = _validator(json.dumps(schema, sort_keys=True))
    if validator is None:
        return None
    if validator is False:
        raise SchemaUnverifiable("unevaluatedProperties with patternProperties is not checked")
    try:
        if validator.is_valid(instance):
            return None
        err = best_match(validator.iter_errors(instance))
    except Unresolvable as e:
        raise SchemaUnverifiable(f"$ref cannot be resolved offline: {str(e)[:120]}") from None
    where = "/".join(str(p) for p in err.absolute_path)
    return f"{where or '(root)'}: {err.message}"[:300]
