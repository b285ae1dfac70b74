"""Step S2: turn recorded exchanges into clean, scrubbed training and held-out examples.

Dropped, and counted by reason: errors, missing answers, truncated answers
(`finish_reason = "length"`), refusals, answers not from the teacher (a student must never
learn from its own or another student's output), and duplicates. What remains is scrubbed
of secrets and PII with consistent placeholders, then split train / held-out by a hash of
the request, so a held-out example stays held out however much data arrives later.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.fingerprint import request_key
from gateway.privacy.scrub import ScrubConfig, scrub_exchange

_REFUSAL = re.compile(
    r"^\s*(I'?m sorry,? but I (can(no|')t|won't)|I (can(no|')t|won't) (help|assist|comply)"
    r"|I am unable to (help|assist|comply)|As an AI,? I (can(no|')t|am not able))",
    re.IGNORECASE,
)


@dataclass
class Example:
    request_id: str
    seq: int
    key: str  # hash of what was asked: dedupe and the train/held-out split
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    response_format: dict[str, Any] | None
    answer: dict[str, Any]  # the teacher's assistant message
    tool_choice: Any = None  # part of the request's contract, checked at evaluation

    def as_training(self) -> dict[str, Any]:
        return {"messages": self.messages, "tools": self.tools,
                "response_format": self.response_format, "answer": self.answer}

    def request(self) -> dict[str, Any]:
        """The request as the client sent it: messages and the contract (tools, format,
        tool_choice), without sampling settings."""
        req: dict[str, Any] = {"messages": self.messages}
        if self.tools:
            req["tools"] = self.tools
        if self.response_format:
            req["response_format"] = self.response_format
        if self.tool_choice is not None:
            req["tool_choice"] = self.tool_choice
        return req


@dataclass
class Curated:
    train: list[Example] = field(default_factory=list)
    heldout: list[Example] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    scrubbed: Counter[str] = field(default_factory=Counter)

    def data_hash(self) -> str:
        h = hashlib.sha256()
        for ex in self.train:
            h.update(ex.key.encode())
        return h.hexdigest()[:16]


def is_heldout(key: str, percent: int) -> bool:
    return int(key[:8], 16) % 100 < percent


def drop_reason(row: dict[str, Any]) -> str | None:
    if row.get("status") != 200:
        return "error"
    if (row.get("backend") or "teacher") != "teacher":
        return "not_teacher"
    resp = row.get("response") or {}
    choices = resp.get("choices") or []
    if not choices:
        return "no_answer"
    choice = choices[0]
    if choice.get("finish_reason") == "length":
        return "truncated"
    if choice.get("finish_reason") == "content_filter":
        return "refused"
    msg = choice.get("message") or {}
    if msg.get("refusal"):
        return "refused"
    content = msg.get("content")
    if not msg.get("tool_calls"):
        if not isinstance(content, str) or not content.strip():
            return "empty"
        if _REFUSAL.match(content):
            return "refused"
    return None


def curate(
    rows: Iterable[dict[str, Any]],
    *,
    heldout_percent: int,
    scrub: ScrubConfig | None = None,
) -> Curated:
    """Rows as from `catalog.chat_exchanges` (decoded request and response)."""
    out = Curated()
    seen: set[str] = set()
    for row in rows:
        reason = drop_reason(row)
        if reason:
            out.dropped[reason] += 1
            continue
        request = row["request"]
        key = request_key(request)
        if key in seen:
            out.dropped["duplicate"] += 1
            continue
        seen.add(key)
        message = row["response"]["choices"][0]["message"]
        answer = {k: message.get(k) for k in ("role", "content", "tool_calls") if k in message}
        answer["role"] = "assistant"
        req, ans, counts = scrub_exchange(
            {k: request.get(k) for k in ("messages", "tools", "response_format")},
            answer,
            scrub or ScrubConfig(),
        )
        out.scrubbed.update(counts)
        ex = Example(
            request_id=row["request_id"], seq=row["seq"], key=key,
            messages=req["messages"], tools=req.get("tools"),
            response_format=req.get("response_format"), answer=ans,
            tool_choice=request.get("tool_choice"),
        )
        (out.heldout if is_heldout(key, heldout_percent) else out.train).append(ex)
    return out
