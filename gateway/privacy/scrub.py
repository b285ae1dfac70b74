"""Scrub secrets and personal data from recorded exchanges, with consistent placeholders.

Every value found anywhere in one exchange (prompt, tool-call arguments, answer) is replaced
by the same numbered placeholder everywhere in it (`<EMAIL_1>`, `<CARD_2>`, ...), so an
answer that copies a value from its prompt still copies it, and a student learns to copy
the placeholder. Stdlib + orjson only: cheap enough for the recorder's hot path.
What counts as a secret or a name, and why rules rather than an NER model: `gateway.privacy.pii`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.privacy.pii import (
    KINDS,
    Found,
    find_all,
    has_digit,
    iban_ok,
    luhn_ok,
    name_parts,
    person_field,
    secret_field,
)

__all__ = ["KINDS", "Found", "ScrubConfig", "Scrubber", "iban_ok", "luhn_ok", "scrub_exchange",
           "scrub_text", "scrub_texts"]

_LABEL = {"email": "EMAIL", "phone": "PHONE", "card": "CARD", "iban": "IBAN", "ip": "IP",
          "api_key": "API_KEY", "bearer": "TOKEN", "person": "PERSON"}


@dataclass(frozen=True)
class ScrubConfig:
    kinds: frozenset[str] | None = None  # None: every kind in KINDS

    def __post_init__(self) -> None:
        unknown = sorted(set(self.kinds or ()) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown scrub kind(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(KINDS))}")

    @property
    def active(self) -> tuple[str, ...]:
        return tuple(k for k in KINDS if self.kinds is None or k in self.kinds)


def _json_container(text: str) -> Any:
    """The decoded value when `text` is a JSON object or array, else None."""
    head = text.lstrip()[:1]
    if head not in ("{", "["):
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _leaves(obj: Any, key: str | None = None) -> Iterator[tuple[str | None, str]]:
    if isinstance(obj, str):
        yield key, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if "@" in k or has_digit(k):  # keys are names, but an address can be a key
                yield None, k
            yield from _leaves(v, k)
    elif isinstance(obj, list):
        for v in obj:
            yield from _leaves(v, key)


def _map_json(obj: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(obj, str):
        return fn(obj)
    if isinstance(obj, dict):
        return {fn(k): _map_json(v, fn) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_map_json(v, fn) for v in obj]
    return obj


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


class Scrubber:
    """Placeholders for one exchange: `detect` every string first, then `replace` each."""

    def __init__(self, cfg: ScrubConfig | None = None) -> None:
        self.kinds = (cfg or ScrubConfig()).active
        self.counts: Counter[str] = Counter()  # replacements made, by kind
        self._canon: dict[tuple[str, str], str] = {}  # (kind, canonical) -> placeholder
        self._numbers: Counter[str] = Counter()
        self._surfaces: dict[str, tuple[str, str]] = {}  # text as written -> (placeholder, kind)
        self._ordered: list[str] | None = None

    def _add(self, kind: str, surface: str, canonical: str) -> str:
        ph = self._canon.get((kind, canonical))
        if ph is None:
            self._numbers[kind] += 1
            ph = self._canon[(kind, canonical)] = f"<{_LABEL[kind]}_{self._numbers[kind]}>"
        self._alias(surface, ph, kind)
        return ph

    def _alias(self, surface: str, ph: str, kind: str) -> None:
        # As written, and as it appears inside a JSON string (escaped), so raw JSON text
        # (tool arguments, JSON answers) can be rewritten in place, keeping its formatting.
        forms = {surface}
        if not (surface.isascii() and surface.isprintable()) or '"' in surface or "\\" in surface:
            forms |= {orjson.dumps(surface).decode()[1:-1], json.dumps(surface)[1:-1]}
        for form in forms:
            self._surfaces.setdefault(form, (ph, kind))
        self._ordered = None

    def detect(self, text: str) -> str:
        """Learn the values in `text`; returns `text` unchanged (for use as a walk function)."""
        if not self.kinds or not text:
            return text
        decoded = _json_container(text)
        if decoded is None:
            self._detect_plain(text)
            return text
        for key, leaf in _leaves(decoded):
            if key is not None and self._detect_field(key, leaf):
                continue
            self._detect_plain(leaf)
        return text

    def _detect_field(self, key: str, value: str) -> bool:
        if "api_key" in self.kinds and secret_field(key, value):
            self._add("api_key", value, value)
            return True
        if "person" in self.kinds and person_field(key, value):
            self._add_person(value)
            return True
        return False

    def _add_person(self, name: str) -> None:
        ph = self._add("person", name, name)
        for part in name_parts(name):
            self._alias(part, ph, "person")

    def _detect_plain(self, text: str) -> None:
        for kind, start, end, canonical in find_all(text, self.kinds):  # numbered by position
            if kind == "person":
                self._add_person(canonical)
            else:
                self._add(kind, text[start:end], canonical)

    def replace(self, text: str) -> str:
        """`text` with every learned value replaced by its placeholder."""
        if not self._surfaces or not text:
            return text
        out, counts = self._replace_plain(text)
        if out is not text and _json_container(text) is not None:
            try:
                orjson.loads(out)
            except orjson.JSONDecodeError:  # a value also stood outside a string: re-encode
                counts = Counter()

                def one(s: str) -> str:
                    r, c = self._replace_plain(s)
                    counts.update(c)
                    return r

                out = orjson.dumps(_map_json(orjson.loads(text), one)).decode()
        self.counts.update(counts)
        return out

    def _replace_plain(self, text: str) -> tuple[str, Counter[str]]:
        if self._ordered is None:
            self._ordered = sorted(self._surfaces, key=len, reverse=True)
        spans: list[tuple[int, int, str]] = []
        taken: bytearray | None = None  # characters already inside a longer match
        for surface in self._ordered:
            i = text.find(surface)
            while i >= 0:
                j = i + len(surface)
                if not (
                    (_is_word(surface[0]) and i > 0 and _is_word(text[i - 1]))
                    or (_is_word(surface[-1]) and j < len(text) and _is_word(text[j]))
                    or (taken is not None and taken.find(1, i, j) >= 0)
                ):
                    spans.append((i, j, surface))
                    taken = taken if taken is not None else bytearray(len(text))
                    taken[i:j] = b"\x01" * (j - i)
                i = text.find(surface, i + 1)
        if not spans:
            return text, Counter()
        spans.sort()
        parts, pos, counts = [], 0, Counter[str]()
        for s, e, surface in spans:
            ph, kind = self._surfaces[surface]
            parts += [text[pos:s], ph]
            counts[kind] += 1
            pos = e
        parts.append(text[pos:])
        return "".join(parts), counts


# --- public helpers -------------------------------------------------------------------------

def scrub_texts(texts: list[str], cfg: ScrubConfig | None = None) -> tuple[list[str], Counter[str]]:
    """Scrub several texts with shared placeholders (a request body and its response)."""
    sc = Scrubber(cfg)
    for t in texts:
        sc.detect(t)
    return [sc.replace(t) for t in texts], sc.counts


def scrub_text(text: str, cfg: ScrubConfig | None = None) -> tuple[str, Counter[str]]:
    """One text on its own; a JSON text keeps its structure and formatting."""
    out, counts = scrub_texts([text], cfg)
    return out[0], counts


def _rewrite_message(msg: Any, fn: Callable[[str], str]) -> Any:
    """A copy of a chat message with `fn` applied to its content and tool-call arguments."""
    if not isinstance(msg, dict):
        return msg
    out = dict(msg)
    content = msg.get("content")
    if isinstance(content, str):
        out["content"] = fn(content)
    elif isinstance(content, list):
        out["content"] = [
            {**p, "text": fn(p["text"])} if isinstance(p, dict) and isinstance(p.get("text"), str)
            else p for p in content
        ]
    calls = msg.get("tool_calls")
    if isinstance(calls, list):
        out["tool_calls"] = [_rewrite_call(c, fn) for c in calls]
    if isinstance(msg.get("function_call"), dict):  # the legacy single-call field
        out["function_call"] = _rewrite_call({"function": msg["function_call"]}, fn)["function"]
    return out


def _rewrite_call(call: Any, fn: Callable[[str], str]) -> Any:
    f = call.get("function") if isinstance(call, dict) else None
    if not isinstance(f, dict) or not isinstance(f.get("arguments"), str):
        return call
    return {**call, "function": {**f, "arguments": fn(f["arguments"])}}


def scrub_exchange(
    request: dict[str, Any], answer: dict[str, Any], cfg: ScrubConfig | None = None
) -> tuple[dict[str, Any], dict[str, Any], Counter[str]]:
    """Scrub a request's messages and the answer message with shared placeholders.

    Tools and response_format are left as they are (schemas, not user data). The inputs are
    not modified; copies are returned with the counts of replacements by kind.
    """
    sc = Scrubber(cfg)
    messages = request.get("messages") or []
    for m in messages:
        _rewrite_message(m, sc.detect)
    _rewrite_message(answer, sc.detect)
    req = dict(request)
    if "messages" in request:
        req["messages"] = [_rewrite_message(m, sc.replace) for m in messages]
    return req, _rewrite_message(answer, sc.replace), sc.counts


def pseudonymize(
    request: dict[str, Any], cfg: ScrubConfig | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """A request as a student was trained to see it: PII replaced by placeholders, exactly as
    in its training data. Returns the copy and the map placeholder → original value, which
    `reidentify` applies to the student's answer (copied values come back as they were)."""
    sc = Scrubber(cfg)
    messages = request.get("messages") or []
    for m in messages:
        _rewrite_message(m, sc.detect)
    if not sc._surfaces:
        return request, {}
    originals: dict[str, str] = {}
    for surface, (ph, _) in sc._surfaces.items():
        # A placeholder has several surfaces: the value as written, its JSON-escaped form,
        # and for a name its parts. Restore the whole value as written.
        best = originals.get(ph)
        if best is None or ("\\" in best, -len(best)) > ("\\" in surface, -len(surface)):
            originals[ph] = surface
    return {**request, "messages": [_rewrite_message(m, sc.replace) for m in messages]}, originals


def reidentify(message: dict[str, Any], originals: dict[str, str]) -> dict[str, Any]:
    """Put the original values back where the answer has their placeholders."""
    if not originals:
        return message

    def restore(text: str) -> str:
        if "<" not in text:
            return text
        json_text = text.lstrip()[:1] in ("{", "[")
        for ph, value in originals.items():
            if ph in text:
                text = text.replace(ph, orjson.dumps(value).decode()[1:-1] if json_text
                                    else value)
        return text

    return _rewrite_message(message, restore)  # type: ignore[no-any-return]
