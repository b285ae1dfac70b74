"""The judged comparator for free text: rubric, prompt, strict verdict parsing, sampling.

The teacher model reads the request and two answers in a random order and replies with one
word saying whether they state the same facts and do the same thing. Anything but one of
the four verdict words is a judge failure, and a failure never counts as agreement.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Literal

from policies.compare import Comparison, compare, texts_identical
from policies.contract import assistant_content, tool_calls

VERDICTS = ("SAME", "A_EXTRA", "B_EXTRA", "CONFLICT")
RUBRIC = """You check whether two answers to the same request say the same thing.
Compare ANSWER A and ANSWER B only with each other. A fact is any name, number, date, amount,
place, status or claim; an action is what the answer says was done, will be done or should
be done (for example a refund is not a replacement, "cancelled" is not "postponed").
Wording, tone, greetings and order do not matter. Reply with exactly one word:
SAME - every fact and action in A is in B, and every fact and action in B is in A.
A_EXTRA - A states a fact or action that B does not, and B states nothing that A does not.
B_EXTRA - B states a fact or action that A does not, and A states nothing that B does not.
CONFLICT - they contradict each other, or each states something the other does not.
Reply with the word only."""
# Bounds on what one judge call sends: the request is context and is cut; an answer is
# never cut (a difference past the cut would be judged SAME), a longer one is not judged.
MAX_REQUEST_CHARS = 2000
MAX_ANSWER_CHARS = 6000
MAX_VERDICT_TOKENS = 8  # the verdict is one word; more is never needed
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

Outcome = Literal["same", "student_extra", "student_missing", "conflict", "failure"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the judge said about one student/teacher pair, mapped back to the roles."""

    outcome: Outcome
    detail: str  # short human reason (the failure's cause for a failure)
    raw: str | None = None  # the judge's reply as received (None: no reply)
    student_first: bool | None = None  # the order the judge saw (None: no call made)

    @property
    def agree(self) -> bool:
        return self.outcome == "same"

    @property
    def failed(self) -> bool:
        return self.outcome == "failure"


def failure(detail: str, raw: str | None = None, student_first: bool | None = None) -> Verdict:
    return Verdict("failure", f"judge failure: {detail}", raw, student_first)


def request_text(request: dict[str, Any] | None) -> str:
    """The last user message's text (the context the judge gets), cut to MAX_REQUEST_CHARS."""
    for message in reversed((request or {}).get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts: their text only
                content = " ".join(str(p.get("text") or "") for p in content
                                   if isinstance(p, dict))
            text = str(content or "")
            return text if len(text) <= MAX_REQUEST_CHARS else text[:MAX_REQUEST_CHARS] + " [...]"
    return ""


def judge_messages(request: str, first: str, second: str) -> list[dict[str, str]]:
    """The chat messages of one judge call: the fixed rubric, then this request's texts only."""
    user = (f"REQUEST (context only):\n{request}\n\nANSWER A:\n{first}\n\n"
            f"ANSWER B:\n{second}\n\nVerdict:")
    return [{"role": "system", "content": RUBRIC}, {"role": "user", "content": user}]


def judge_body(model: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    """The chat completion request of one judge call: deterministic, one short word."""
    return {"model": model, "messages": messages, "temperature": 0,
            "max_tokens": MAX_VERDICT_TOKENS, "stream": False}


def parse_verdict(reply: str | None, student_first: bool) -> Verdict:
    """The reply, mapped from positions (A, B) back to roles (student, teacher). Strict: the
    reply stripped of surrounding whitespace must be exactly one verdict word; anything else
    (a sentence, a lower-case word, a trailing period, two words) is a judge failure."""
    if reply is None:
        return failure("no content in the judge's reply", None, student_first)
    word = reply.strip()
    if word not in VERDICTS:
        shown = word if len(word) <= 60 else word[:57] + "..."
        return failure(f"reply {shown!r} is not one of {', '.join(VERDICTS)}", reply,
                       student_first)
    if word == "SAME":
        return Verdict("same", "judge: same facts and actions", reply, student_first)
    if word == "CONFLICT":
        return Verdict("conflict", "judge: the answers contradict each other", reply,
                       student_first)
    student_word = "A_EXTRA" if student_first else "B_EXTRA"
    if word == student_word:
        return Verdict("student_extra", "judge: the student states facts or actions the "
                       "teacher's answer does not", reply, student_first)
    return Verdict("student_missing", "judge: the student leaves out facts or actions of the "
                   "teacher's answer", reply, student_first)


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def precheck(student: str, teacher: str) -> Verdict | None:
    """A verdict reached without the judge, or None: identical texts agree; answers whose
    numbers differ never do (no judge can talk "$40" into "$400"); an answer too long to
    send whole is not judged (a failure, so it never agrees)."""
    if texts_identical(student, teacher):
        return Verdict("same", "identical text")
    if numbers(student) != numbers(teacher):
        extra = sorted(numbers(student) - numbers(teacher))
        missing = sorted(numbers(teacher) - numbers(student))
        return Verdict("conflict", f"numbers differ: student {extra or '-'} vs teacher "
                       f"{missing or '-'}")
    if max(len(student), len(teacher)) > MAX_ANSWER_CHARS:
        return failure(f"an answer is longer than {MAX_ANSWER_CHARS} characters")
    return None


def text_pair(kind: str, student: dict[str, Any],
              teacher: dict[str, Any]) -> tuple[str, str] | None:
    """The two texts the judge would compare, or None when this comparison is not free text
    (structured kinds, tool calls, an empty answer: the ordinary comparators decide)."""
    if kind not in ("text", "tool_call") or tool_calls(teacher) or tool_calls(student):
        return None
    a, b = assistant_content(student) or "", assistant_content(teacher) or ""
    return (a, b) if a.strip() and b.strip() else None


def judged_comparison(kind: str, student: dict[str, Any], teacher: dict[str, Any],
                      request: dict[str, Any] | None, verdict: Verdict) -> Comparison:
    """The comparison of a free-text pair with the judge's verdict in place of the cosine:
    the request's contract still applies (an invalid answer never agrees), and only a
    SAME verdict (or identical text) agrees."""
    base = compare(kind, student, teacher, request=request, similarity=1.0, text_threshold=1.0)
    if not base.valid:
        return base
    return Comparison(score=1.0 if verdict.agree else 0.0, agree=verdict.agree, valid=True,
                      detail=verdict.detail)


def sampled(request_id: str, rate: float) -> bool:
    """Whether this request's comparison is judged: a hash of its id, so the choice is
    independent of both answers (judging only some answers would bias the agreement) and
    the same in every replica."""
    if rate >= 1.0:
        return True
    digest = hashlib.sha256(f"slimgate-judge:{request_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate
