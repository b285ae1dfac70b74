"""Request fingerprints: which requests are the same task, decided in microseconds.

A fingerprint hashes what an agent keeps fixed for one kind of call — the system prompt(s)
with their variable parts masked (dates, numbers, ids, e-mails, URLs, quoted spans), the
sorted tool names and the response format with its schema — and ignores the user content.
Requests with one fingerprint are one task candidate. `instruction_units` gives the constant
sentences a request's first user message may carry (an instruction under a generic prompt):
discovery mines them, and the gateway matches them, with the same function.
`request_key` is a request's identity (replay, deduplication, the held-out split).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import re
from typing import Any

import orjson

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DAY = r"(?:mon|tues|wednes|thurs|fri|satur|sun)day"
_URL = re.compile(r"\bhttps?://[^\s\"'<>]+|\bwww\.[^\s\"'<>]+", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# One pass, first alternative wins at each position; the group name is the placeholder.
_VARIABLE = re.compile(
    r"(?P<uuid>\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b)"
    r"|(?P<date>\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
    r"|\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b"
    rf"|\b(?=[adfjmnostw])(?:{_MONTH}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b(?:,?\s+\d{{4}}\b)?|{_DAY}\b)"
    rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH}\b(?:,?\s+\d{{4}}\b)?)"
    r"|(?P<time>\b\d{1,2}:\d{2}(?::\d{2})?(?:\s*[ap]\.?m\.?)?(?!\w)|\b\d{1,2}\s*[ap]\.?m\b\.?)"
    r"|(?P<quote>\"[^\"\n]{1,200}\"|“[^”\n]{1,200}”|(?<!\w)'[^'\n]{1,200}'(?!\w))"
    r"|(?P<id>\b(?=[\w-]*\d)(?=[\w-]*[a-z])[a-z0-9][\w-]{5,}\b|\b[0-9a-f]{8,}\b)"
    r"|(?P<num>(?:(?<!\w)[-+])?\d+(?:[.,]\d+)*%?)",
    re.IGNORECASE,
)
# Two masked prompts (or instruction templates) are one text edited when a single span of at
# most ALIKE_EDIT_WORDS words differs, or when they are ALIKE_RATIO alike word for word
# (difflib). Measured with `bench/discovery_bench.py`: one word changed scores >= 0.970 on the
# τ²-bench-derived prompts and >= 0.952 on AgentDojo's; two tasks' prompts with the same tools
# score at most 0.09 on AgentDojo and 0.93 on τ²-bench (the airline and retail extractors,
# a desk name and a key list apart: alike, and kept apart by their JSON keys).
ALIKE_RATIO = 0.9
ALIKE_EDIT_WORDS = 3  # a word, a name, a brand ("Blue Harbor Coffee"), a date: 1-3 words
_SPACE = re.compile(r"\s+")
_CONTENT_CHARS = 2000  # the embedder reads ~256 tokens; the rest only costs masking time
# Only the head of a long system prompt counts (whole lines): instructions come first, and a
# prompt stuffed with per-request context must not cost milliseconds to mask.
_SYSTEM_CHARS = 4096
# An instruction carried in the user turn comes first or is a whole policy (τ²-bench's policies
# are 5-8k characters); this much of the first user message is split into units.
_UNIT_CHARS = 8192
# Sentence ends, colons that introduce a payload ("Ticket: ..."), and line breaks.
_UNIT_SPLIT = re.compile(r"(?<=[.!?:])\s+|\n+")


def mask_variable(text: str) -> str:
    """`text` with variable parts replaced by placeholders and whitespace collapsed.

    >>> mask_variable('Today is 2025-03-14; mail ana@x.io about order "A-17", 3 items.')
    'Today is <date>; mail <email> about order <quote>, <num> items.'
    """
    if "://" in text or "www." in text:
        text = _URL.sub("<url>", text)
    if "@" in text:
        text = _EMAIL.sub("<email>", text)
    text = _VARIABLE.sub(lambda m: f"<{m.lastgroup}>", text)
    return _SPACE.sub(" ", text).strip()


@functools.lru_cache(maxsize=4096)
def _masked_system(text: str) -> str:
    if len(text) > _SYSTEM_CHARS:
        text = text[:_SYSTEM_CHARS].rsplit("\n", 1)[0]
    return mask_variable(text)


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message: a string, or its text parts joined."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p["text"] for p in content
            if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    msgs = request.get("messages")
    return [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []


def system_text(request: dict[str, Any]) -> str:
    """The masked system (and developer) prompts of a request, joined."""
    return "\n".join(
        _masked_system(message_text(m)) for m in _messages(request)
        if m.get("role") in ("system", "developer")
    )


def content_text(request: dict[str, Any]) -> str:
    """The masked user messages of a request, joined: what varies within a task."""
    parts = [message_text(m) for m in _messages(request) if m.get("role") == "user"]
    return mask_variable("\n".join(parts)[:_CONTENT_CHARS])


def tool_names(request: dict[str, Any]) -> list[str]:
    """Sorted names of the request's tools (and legacy `functions`)."""
    names: set[str] = set()
    for tool in request.get("tools") or []:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            names.add(fn["name"])
    for fn in request.get("functions") or []:
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            names.add(fn["name"])
    return sorted(names)


def format_key(request: dict[str, Any]) -> str:
    """The response format: its type, plus name and schema as canonical JSON for json_schema."""
    rf = request.get("response_format")
    if not isinstance(rf, dict):
        return ""
    kind = str(rf.get("type") or "")
    if kind != "json_schema":
        return kind
    js = rf.get("json_schema") or {}
    if not isinstance(js, dict):
        return kind
    schema = {"name": js.get("name"), "schema": js.get("schema")}
    return kind + ":" + orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode()


def signature(request: dict[str, Any]) -> str:
    """Tools and response format only: requests with different signatures never merge."""
    return ",".join(tool_names(request)) + "|" + format_key(request)


def fingerprint(request: dict[str, Any]) -> str:
    """16 hex digits identifying the request's task candidate."""
    key = "\x1e".join((system_text(request), signature(request)))
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def _first_user_text(request: dict[str, Any]) -> str:
    for m in _messages(request):
        if m.get("role") == "user":
            return message_text(m)
    return ""


@functools.lru_cache(maxsize=4096)
def _units(text: str) -> tuple[str, ...]:
    if "://" in text or "www." in text:
        text = _URL.sub("<url>", text)
    if "@" in text:
        text = _EMAIL.sub("<email>", text)
    masked = _VARIABLE.sub(lambda m: f"<{m.lastgroup}>", text)  # one pass, then split
    return tuple(u for u in (_SPACE.sub(" ", x).strip() for x in _UNIT_SPLIT.split(masked)) if u)


def instruction_units(request: dict[str, Any]) -> tuple[str, ...]:
    """The masked sentences and lines of the first user message, in order.

    A sentence that many requests of one fingerprint share is template text (an instruction,
    a payload label like "Ticket:"); the rest is the instance. Discovery decides which is which.
    """
    return _units(_first_user_text(request)[:_UNIT_CHARS])


def unit_hash(unit: str) -> str:
    """16 hex digits naming one masked unit, as task records store instruction templates."""
    return hashlib.blake2b(unit.encode(), digest_size=8).hexdigest()


def words_alike(a: list[str], b: list[str]) -> bool:
    """Whether two word sequences are one text edited: a single span of at most
    ALIKE_EDIT_WORDS words replaced, added or dropped (a word, a name, a date) amid at least
    twice as many unchanged words, or ALIKE_RATIO alike overall (scattered small edits)."""
    if a == b:
        return True
    m = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if m.real_quick_ratio() < ALIKE_RATIO / 2:
        return False
    edits = [op for op in m.get_opcodes() if op[0] != "equal"]
    if len(edits) == 1:
        _, i1, i2, j1, j2 = edits[0]
        span = max(i2 - i1, j2 - j1)
        if span <= ALIKE_EDIT_WORDS and len(a) - (i2 - i1) >= 2 * span:
            return True
    return m.quick_ratio() >= ALIKE_RATIO and m.ratio() >= ALIKE_RATIO


KEY_FIELDS = ("messages", "tools", "response_format")  # what a request asks, for the key


def request_key(request: dict[str, Any]) -> str:
    """What the request asks, canonically: messages, tools and response format.

    The model name, sampling parameters and `stream` are left out: the same question to
    another model or with another temperature is still the same question.
    """
    what = {k: request.get(k) for k in KEY_FIELDS}
    return hashlib.sha256(orjson.dumps(what, option=orjson.OPT_SORT_KEYS)).hexdigest()
