"""Copy slots: the values a task's answers copy from the request become numbered placeholders.

A small student cannot reproduce an order id or a date it has never seen; it can copy `<V2>`.
The proposer reads the request alone (at serving time there is no answer to look at): ids,
numbers, dates, times, quoted and capitalized phrases, plus the task's gazetteer (values its
training answers copied verbatim). The same code delexicalizes training data (distill) and
the requests a student is asked (gateway), so slots are numbered alike on both sides.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

PLACEHOLDER = re.compile(r"<V(\d+)>")
FOREIGN = re.compile(r"<[A-Z][A-Z_]*_\d+>|<V\d+>")  # the scrubber's placeholders, and ours

_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
          r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
_B, _E = r"(?<![\w<])", r"(?![\w>])"
_AMOUNT = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"  # thousands grouped by three: "3,4" is two
_TIME = r"\d{1,2}:\d{2}(?::\d{2})?"
# In priority order: a span found by an earlier pattern is not cut by a later one. Each value
# is one atom: a date directly followed by a time, an amount glued to its currency, are two
# slots (a student re-joins adjacent slots by pointing at both, but can never split one).
# A pattern with groups claims each group that matched as its own value.
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("email", re.compile(_B + r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+" + _E)),
    ("timestamp", re.compile(_B + r"\d{4}-\d{2}-\d{2}T" + _TIME + r"(?:Z|[+-]\d{2}:?\d{2})?"
                             + _E)),
    ("date", re.compile(_B + r"(?:\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4}|\d{4}/\d{2}/\d{2})"
                        + _E)),
    ("date", re.compile(_B + _MONTH + r"\.? \d{1,2}(?:st|nd|rd|th)?(?:,? \d{4})?" + _E)),
    ("date", re.compile(_B + r"\d{1,2}(?:st|nd|rd|th)? (?:of )?" + _MONTH + r"(?:,? \d{4})?"
                        + _E)),
    ("time", re.compile(_B + r"\d{1,2}(?::\d{2})?\s?(?:[ap]\.?m\.?)" + _E, re.IGNORECASE)),
    ("time", re.compile(_B + _TIME + _E)),
    ("money", re.compile(_B + r"(?:(?P<cur>[A-Z]{3})(?P<amt>" + _AMOUNT + r")|(?P<amt2>"
                         + _AMOUNT + r")(?P<cur2>[A-Z]{3}))" + _E)),
    ("id", re.compile(_B + r"(?:[A-Za-z][\w-]*\d|\d+[A-Za-z_])[\w-]*" + _E)),
    ("number", re.compile(r"(?<![\w<.])-?" + _AMOUNT + r"(?![\w>]|\.\d)")),
    # A straight single quote opens only after a non-letter and closes only before one: the
    # apostrophes of "I'm … I'd" enclose no value.
    ("quoted", re.compile(r"(?:(?<=[\"“])|(?<=(?<!\w)'))[^\"“”'\n]{2,80}(?=[\"”]|'(?!\w))")),
    ("name", re.compile(r"(?<![\w<])[A-Z][\w'-]*(?: (?:of |de |la |van |von )?[A-Z][\w'-]*)*"
                        r"(?![\w>])")),
]
# Where a capitalized word is only a sentence's first word. Not after a colon ("Attendees:
# Eli") nor after a title's abbreviation ("Dr. Maria Lopez").
_SENTENCE_START = re.compile(r"(?:^|(?<!\b(?:Dr|Mr|Ms|St))(?<!\bMrs)(?<!\bProf)[.!?\n]\s*"
                             r"|^\s*[-*•]\s*)$")
# A capitalized word that opens a list of them ("Eli, Mateo and Omar will join") is a value.
_LIST_NEXT = re.compile(r"(?:,| and| or|,? &) [A-Z]")
_ACRONYM = re.compile(r"[A-Z]{2,}")  # "CFO", "DC": a title or a code, not part of a name
MAX_GAZETTEER = 5000  # values kept per task, most frequent first


def _word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _bounded(text: str, i: int, j: int) -> bool:
    """Whether text[i:j] is not part of a longer word on either side."""
    return not ((i > 0 and _word(text[i]) and _word(text[i - 1]))
                or (j < len(text) and _word(text[j - 1]) and _word(text[j])))


def _name_parts(text: str, i: int, j: int) -> list[tuple[int, int]]:
    """The values in a run of capitalized words text[i:j]: an acronym next to a name is a
    value of its own ("Maria Lopez CFO", "Washington DC"), and a sentence's first word is
    capitalized anyway, so it is left out unless it is a list's first item ("Eli, Mateo and …")."""
    words = [(m.start() + i, m.end() + i) for m in re.finditer(r"\S+", text[i:j])]
    if text[j - 1] in "'-":  # "'S'," inside a quoted dict: the quote is no part of it
        words[-1] = (words[-1][0], j - 1)
    one_item = len(words) == 1 and _LIST_NEXT.match(text, j)
    if _SENTENCE_START.search(text[:i]) and not one_item:
        words = words[1:]
    parts: list[list[tuple[int, int]]] = []
    for a, b in words:
        acronym = bool(_ACRONYM.fullmatch(text[a:b]))
        if parts and not acronym and not _ACRONYM.fullmatch(text[slice(*parts[-1][-1])]):
            parts[-1].append((a, b))
        else:
            parts.append([(a, b)])
    out = []
    for part in parts:
        while part and text[part[0][0]].islower():  # "of Acme" after "CFO": "Acme"
            part = part[1:]
        if part and not re.fullmatch(r"I(?:'\w+)?", text[part[0][0]:part[-1][1]]):
            out.append((part[0][0], part[-1][1]))
    return out


def find_all(text: str, value: str) -> Iterator[int]:
    """Start offsets of `value` in `text` where it stands as a whole word (or words)."""
    i = text.find(value)
    while i >= 0:
        if _bounded(text, i, i + len(value)):
            yield i
        i = text.find(value, i + 1)


@dataclass
class CopySlots:
    """A task's proposer settings; saved in its student's slimgate.json as `copy_slots`."""

    gazetteer: list[str] = field(default_factory=list)  # values answers copied, for new requests
    numeric_fields: list[str] = field(default_factory=list)  # answer fields copied as numbers
    patterns: bool = True  # also propose ids, numbers, dates, times, quoted and capitalized text
    coverage: dict[str, Any] = field(default_factory=dict)  # measured at training, for reports
    _ordered: list[str] | None = field(default=None, init=False, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {"gazetteer": self.gazetteer, "numeric_fields": self.numeric_fields,
                "patterns": self.patterns, "coverage": self.coverage}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CopySlots:
        return cls(gazetteer=[str(v) for v in data.get("gazetteer") or []],
                   numeric_fields=[str(f) for f in data.get("numeric_fields") or []],
                   patterns=bool(data.get("patterns", True)),
                   coverage=dict(data.get("coverage") or {}))

    def propose(self, text: str) -> list[str]:
        """The values in `text` that may be copied: gazetteer entries, then patterns."""
        taken = bytearray(len(text))
        for m in FOREIGN.finditer(text):  # never split another placeholder
            taken[m.start():m.end()] = b"\x01" * (m.end() - m.start())
        found: list[tuple[int, str]] = []

        def claim(i: int, j: int) -> None:
            if j > i and taken.find(1, i, j) < 0:
                taken[i:j] = b"\x01" * (j - i)
                found.append((i, text[i:j]))

        for value in self._by_length():
            for i in find_all(text, value):
                claim(i, i + len(value))
        if self.patterns:
            for kind, pattern in _PATTERNS:
                for m in pattern.finditer(text):
                    if kind == "name":
                        for i, j in _name_parts(text, m.start(), m.end()):
                            claim(i, j)
                    elif pattern.groups:
                        for g in range(1, pattern.groups + 1):
                            claim(*m.span(g))
                    else:
                        claim(m.start(), m.end())
        return [v for _, v in sorted(found)]

    def _by_length(self) -> list[str]:
        if self._ordered is None or len(self._ordered) != len(self.gazetteer):
            self._ordered = sorted(self.gazetteer, key=len, reverse=True)
        return self._ordered


# --- walking requests and answers -----------------------------------------------------------

def _map_json(obj: Any, fn: Callable[[Any, str], Any], path: str) -> Any:
    if isinstance(obj, dict):
        return {k: _map_json(v, fn, f"{path}/{k}") for k, v in obj.items()}
    if isinstance(obj, list):
        return [_map_json(v, fn, f"{path}/*") for v in obj]
    return fn(obj, path)


def _json(text: str) -> Any:
    if text.lstrip()[:1] not in ("{", "["):
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _texts(message: dict[str, Any]) -> Iterator[str]:
    """Every string in a message a value could be copied from (content, call arguments)."""
    content = message.get("content")
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        yield from (p["text"] for p in content
                    if isinstance(p, dict) and isinstance(p.get("text"), str))
    for call in message.get("tool_calls") or ():
        args = (call.get("function") or {}).get("arguments") if isinstance(call, dict) else None
        if isinstance(args, str):
            yield args


def request_texts(request: dict[str, Any]) -> list[str]:
    """The request's texts a value can be copied from: every turn but the system prompt
    (constant per task: its words are instructions, not values)."""
    return [t for m in request.get("messages") or () if isinstance(m, dict)
            and m.get("role") not in ("system", "developer") for t in _texts(m)]


def rewrite_message(msg: dict[str, Any], fn: Callable[[str, str], str]) -> dict[str, Any]:
    """A copy of `msg` with fn(text, field) applied to its content and call arguments."""
    out = dict(msg)
    content = msg.get("content")
    if isinstance(content, str):
        out["content"] = fn(content, "content")
    elif isinstance(content, list):
        out["content"] = [{**p, "text": fn(p["text"], "content")}
                          if isinstance(p, dict) and isinstance(p.get("text"), str) else p
                          for p in content]
    calls = msg.get("tool_calls")
    if isinstance(calls, list):
        new = []
        for call in calls:
            f = call.get("function") if isinstance(call, dict) else None
            if isinstance(f, dict) and isinstance(f.get("arguments"), str):
                call = {**call, "function": {**f, "arguments": fn(
                    f["arguments"], f"call:{f.get('name')}")}}
            new.append(call)
        out["tool_calls"] = new
    return out


def number_text(value: Any) -> str | None:
    """A JSON number as a request would write it; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


class Slots:
    """The placeholders of one request: value ↔ `<Vn>`, numbered by first appearance."""

    def __init__(self, proposer: CopySlots, request: dict[str, Any]) -> None:
        self.proposer = proposer
        self.values: dict[str, str] = {}  # value -> placeholder
        texts = request_texts(request)
        self.preexisting = {m.group(0) for t in texts for m in PLACEHOLDER.finditer(t)}
        if self.preexisting:  # a request that already holds our markers is not rewritten
            return
        for text in texts:
            for value in proposer.propose(text):
                self.values.setdefault(value, f"<V{len(self.values) + 1}>")
        self._ordered = sorted(self.values, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self.values)

    def replace(self, text: str) -> str:
        """`text` with every known value (as a whole word) replaced by its placeholder."""
        if not self.values:
            return text
        taken = bytearray(len(text))
        spans = []
        for value in self._ordered:
            for i in find_all(text, value):
                j = i + len(value)
                if taken.find(1, i, j) < 0:
                    taken[i:j] = b"\x01" * (j - i)
                    spans.append((i, j, self.values[value]))
        if not spans:
            return text
        parts, pos = [], 0
        for i, j, ph in sorted(spans):
            parts += [text[pos:i], ph]
            pos = j
        return "".join([*parts, text[pos:]])

    def _leaf(self, value: Any, path: str) -> Any:
        if isinstance(value, str):
            return self.replace(value)
        num = number_text(value)
        if num is not None and num in self.values:
            return self.values[num]  # a copied number becomes a string slot; typed back later
        return value

    def delex_text(self, text: str, field_name: str = "content") -> str:
        decoded = _json(text)
        if decoded is None:
            return self.replace(text)
        out = _map_json(decoded, self._leaf, field_name)
        return text if out == decoded else orjson.dumps(out).decode()

    def delex_message(self, message: dict[str, Any]) -> dict[str, Any]:
        return rewrite_message(message, self.delex_text) if self.values else message

    def delex_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """The request as the student is asked it (system turns left as they are)."""
        if not self.values:
            return request
        msgs = [m if not isinstance(m, dict) or m.get("role") in ("system", "developer")
                else self.delex_message(m) for m in request.get("messages") or ()]
        return {**request, "messages": msgs}

    def restore_message(self, message: dict[str, Any]) -> dict[str, Any]:
        """The student's answer with its placeholders replaced by the request's values.

        Raises SlotLeak when a placeholder is left that this request did not define.
        """
        originals = {ph: v for v, ph in self.values.items()}
        numeric = set(self.proposer.numeric_fields)

        def leaf(value: Any, path: str) -> Any:
            if not isinstance(value, str) or "<V" not in value:
                return value
            whole = originals.get(value)
            if whole is not None and path in numeric:
                decoded = _json(f"[{whole}]")
                if decoded and number_text(decoded[0]) == whole:
                    return decoded[0]
            return PLACEHOLDER.sub(lambda m: originals.get(m.group(0), m.group(0)), value)

        def restore(text: str, field_name: str) -> str:
            if "<V" not in text:
                return text
            decoded = _json(text)
            if decoded is not None:
                out = orjson.dumps(_map_json(decoded, leaf, field_name)).decode()
            else:
                out = PLACEHOLDER.sub(lambda m: originals.get(m.group(0), m.group(0)), text)
            left = {m.group(0) for m in PLACEHOLDER.finditer(out)} - self.preexisting
            left -= {m.group(0) for v in originals.values() for m in PLACEHOLDER.finditer(v)}
            if left:
                raise SlotLeak(f"the student's answer holds {', '.join(sorted(left))}, "
                               "which this request has no value for")
            return out

        return rewrite_message(message, restore)


class SlotLeak(ValueError):
    """A student answer with a placeholder that cannot be restored: never sent to a client."""


def answer_leaves(message: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(field path, value) for every leaf of an answer: JSON content and call arguments by
    key (`content/order_id`, `call:book_hotel/nights`), plain content as `content`."""
    out: list[tuple[str, Any]] = []

    def collect(text: str, field_name: str) -> str:
        decoded = _json(text)
        if decoded is None:
            out.append((field_name, text))
        else:
            _map_json(decoded, lambda v, p: out.append((p, v)), field_name)
        return text

    rewrite_message(message, collect)
    yield from out


def copied_values(request: dict[str, Any], answer: dict[str, Any],
                  fields: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """(field, value) for the answer's leaves that stand verbatim in the request's turns."""
    texts = request_texts(request)
    wanted = set(fields) if fields is not None else None
    found = []
    for path, value in answer_leaves(answer):
        text = value if isinstance(value, str) else number_text(value)
        if not text or not text.strip() or (wanted is not None and path not in wanted):
            continue
        if any(next(find_all(t, text), None) is not None for t in texts):
            found.append((path, text))
    return found
