"""Step S2: turn recorded exchanges into clean, scrubbed training and held-out examples.

Dropped, and counted by reason: errors, missing answers, truncated answers
(`finish_reason = "length"`), refusals, answers not from the teacher (a student must never
learn from its own or another student's output), and duplicates. What remains is scrubbed
of secrets and PII with consistent placeholders, then split train / held-out by a hash of
the request, so a held-out example stays held out however much data arrives later.

Agents repeat themselves, so a duplicate is evidence, not waste: every later answer the
teacher gave to a request is kept (as `Example.refs`) and a student is judged on the traffic,
not on distinct requests — held-out requests on all their occurrences, trained ones on their
repeats. The held-out share grows (up to `MAX_HELDOUT_PERCENT`) only where that evidence
would otherwise fall short of what the gate needs (`min_evidence`).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

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
    # The teacher's answers that count as evidence on this request, each with how often it
    # was given: every occurrence of a held-out request, the repeats of a trained one.
    # None stands for answers past MAX_ANSWERS_PER_REQUEST (no student can match them all).
    refs: list[tuple[dict[str, Any] | None, int]] = field(default_factory=list)

    @property
    def weight(self) -> int:
        """Comparisons this request stands for when judged (its evidence occurrences)."""
        return sum(count for _, count in self.refs)

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


# Bounds on cost, not fitted thresholds: they cap memory and judging time per task.
MAX_HELDOUT_PERCENT = 50  # a task never gives up more than half its requests to judging
MAX_ANSWERS_PER_REQUEST = 8  # distinct teacher answers kept per request; more count as misses
MAX_REPEAT_JUDGED = 300  # trained requests judged on their repeats (stable sample by key)


@dataclass
class Curated:
    train: list[Example] = field(default_factory=list)
    heldout: list[Example] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    scrubbed: Counter[str] = field(default_factory=Counter)
    heldout_percent: int = 0  # the share of requests held out, as chosen
    requests: int = 0  # clean requests (occurrences), duplicates included
    seen_once: int = 0  # distinct requests that came exactly once
    # Judged evidence the data would give at the largest held-out share (what it can reach
    # now), and when its first and last clean requests came: how soon it can be judged.
    reach: int = 0
    first_at: float | None = None
    last_at: float | None = None

    @property
    def new_mass(self) -> float:
        """Good-Turing estimate of the chance the next request is one never seen: the share
        of requests that were seen once (1.0 when every request is new)."""
        return self.seen_once / self.requests if self.requests else 1.0

    @property
    def repeated(self) -> list[Example]:
        """Trained requests that came again: judged on their repeats (a stable sample)."""
        seen = sorted((ex for ex in self.train if ex.refs), key=lambda ex: ex.key)
        return seen[:MAX_REPEAT_JUDGED]

    @property
    def judged(self) -> list[Example]:
        """What a student is judged on: held-out requests, then trained ones that repeat."""
        return self.heldout + self.repeated

    @property
    def evidence(self) -> int:
        """Comparisons a judgement of this data makes (the gate's n)."""
        return sum(ex.weight for ex in self.judged)

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
    min_evidence: int = 0,
) -> Curated:
    """Rows as from `catalog.chat_exchanges` (decoded request and response).

    `heldout_percent` is the share held out by request hash; it is raised (at most to
    MAX_HELDOUT_PERCENT) until the judged evidence reaches `min_evidence`, where it can.
    """
    out = Curated()
    firsts: dict[str, Example] = {}
    requests: dict[str, dict[str, Any]] = {}  # key -> the request, for scrubbing other answers
    answers: dict[str, dict[bytes, list[Any]]] = {}  # key -> canonical answer -> [answer, count]
    cfg = scrub or ScrubConfig()
    for row in rows:
        reason = drop_reason(row)
        if reason:
            out.dropped[reason] += 1
            continue
        request = row["request"]
        key = request_key(request)
        message = row["response"]["choices"][0]["message"]
        answer = {k: message.get(k) for k in ("role", "content", "tool_calls") if k in message}
        answer["role"] = "assistant"
        canon = orjson.dumps(answer, option=orjson.OPT_SORT_KEYS)
        out.requests += 1
        at = row.get("created_at")
        if at is not None:
            out.first_at = at if out.first_at is None else min(out.first_at, at)
            out.last_at = at if out.last_at is None else max(out.last_at, at)
        if key in firsts:
            out.dropped["duplicate"] += 1
            alts = answers[key]
            if canon in alts:
                alts[canon][1] += 1
            elif len(alts) < MAX_ANSWERS_PER_REQUEST:
                alts[canon] = [answer, 1]
            else:  # a teacher this inconsistent: counted against any student
                alts[b""] = [None, alts.get(b"", [None, 0])[1] + 1]
            continue
        req, ans, counts = scrub_exchange(
            {k: request.get(k) for k in ("messages", "tools", "response_format")}, answer, cfg)
        out.scrubbed.update(counts)
        firsts[key] = Example(
            request_id=row["request_id"], seq=row["seq"], key=key,
            messages=req["messages"], tools=req.get("tools"),
            response_format=req.get("response_format"), answer=ans,
            tool_choice=request.get("tool_choice"),
        )
        requests[key] = request
        answers[key] = {canon: [None, 1]}  # None: the example's own (scrubbed) answer
    out.seen_once = sum(1 for alts in answers.values() if sum(c for _, c in alts.values()) == 1)
    totals = [(int(key[:8], 16) % 100, sum(c for _, c in alts.values()))
              for key, alts in answers.items()]
    out.heldout_percent = _heldout_share(totals, heldout_percent, min_evidence)
    out.reach = _evidence_at(totals, max(heldout_percent, MAX_HELDOUT_PERCENT))
    for key, ex in firsts.items():
        held = is_heldout(key, out.heldout_percent)
        ex.refs = _refs(ex, answers[key], requests[key], cfg, first_counts=held)
        (out.heldout if held else out.train).append(ex)
    return out


def _evidence_at(totals: list[tuple[int, int]], percent: int) -> int:
    """Judged evidence with `percent` held out: a held-out request counts every occurrence,
    a trained one its repeats (`totals`: each request's hash bucket and occurrences)."""
    return sum(n if bucket < percent else n - 1 for bucket, n in totals)


def _heldout_share(totals: list[tuple[int, int]], percent: int, min_evidence: int) -> int:
    """The smallest held-out percent from `percent` up whose evidence reaches `min_evidence`."""
    for p in range(percent, max(percent, MAX_HELDOUT_PERCENT) + 1):
        if _evidence_at(totals, p) >= min_evidence:
            return p
    return percent  # no share is enough yet: the task waits for data, split as usual


def _refs(ex: Example, alts: dict[bytes, list[Any]], request: dict[str, Any], cfg: ScrubConfig,
          *, first_counts: bool) -> list[tuple[dict[str, Any] | None, int]]:
    """The answers that judge `ex`, scrubbed as its request was; the first occurrence is the
    one trained on, so for a trained request only its repeats count."""
    refs: list[tuple[dict[str, Any] | None, int]] = []
    for i, (answer, count) in enumerate(alts.values()):
        if i == 0 and not first_counts:
            count -= 1
        if count <= 0:
            continue
        if answer is None and i == 0:
            refs.append((ex.answer, count))
        elif answer is None:  # answers past MAX_ANSWERS_PER_REQUEST: no student matches them
            refs.append((None, count))
        else:
            _, scrubbed, _ = scrub_exchange(
                {k: request.get(k) for k in ("messages", "tools", "response_format")},
                answer, cfg)
            refs.append((scrubbed, count))
    return refs
