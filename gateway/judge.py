"""Judge calls: the teacher asked, once per free-text comparison, whether two answers agree.

`TeacherJudge` puts the two answers in a random order (A/B), calls the model through an
`Ask` (the gateway's upstreams, or the worker's `distill.judge_client`), and maps the
strictly parsed verdict back to student/teacher. Every call it makes comes back as a
`JudgeCall`, for the caller to record as a `backend = 'judge'` exchange: counted and priced
like any teacher call, never read as task traffic or training data.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.store.recorder import Exchange
from gateway.upstream.base import UpstreamFailure
from policies.contract import assistant_content
from policies.judge import (
    Verdict,
    failure,
    judge_body,
    judge_messages,
    parse_verdict,
    precheck,
    request_text,
)

JUDGE_BACKEND = "judge"  # the exchanges' `backend` of judge calls (discovery skips them)
# One call: the judge request's body -> (the response, the provider's model name for pricing)
Ask = Callable[[dict[str, Any]], Awaitable[tuple[dict[str, Any], str | None]]]


@dataclass(slots=True)
class JudgeCall:
    """One call made to the judge, as it is recorded."""

    model: str  # the configured model name asked
    upstream_model: str | None  # the provider's model name (prices)
    body: dict[str, Any]
    response: dict[str, Any] | None
    status: int
    error: str | None
    latency_ms: float
    created_at: float = field(default_factory=time.time)

    @property
    def prompt_tokens(self) -> int:
        return int(((self.response or {}).get("usage") or {}).get("prompt_tokens") or 0)

    @property
    def completion_tokens(self) -> int:
        return int(((self.response or {}).get("usage") or {}).get("completion_tokens") or 0)


@dataclass(slots=True)
class JudgeUsage:
    """What judging cost: calls made, failures among them, tokens, dollars where priced."""

    calls: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0  # calls whose model has no price in litellm's map

    def add(self, call: JudgeCall, verdict: Verdict, cost: float | None) -> None:
        self.calls += 1
        self.failures += int(verdict.failed)
        self.prompt_tokens += call.prompt_tokens
        self.completion_tokens += call.completion_tokens
        if cost is None:
            self.unpriced += 1
        else:
            self.cost_usd += cost

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "failures": self.failures,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "cost_usd": round(self.cost_usd, 6), "unpriced": self.unpriced}


class TeacherJudge:
    """Judges free-text pairs with one model. `rng` decides each order (seed it in tests)."""

    def __init__(self, ask: Ask, model: str, *, timeout_s: float,
                 rng: random.Random | None = None) -> None:
        self._ask = ask
        self.model = model
        self._timeout_s = timeout_s
        self._rng = rng or random.Random()

    async def judge(self, student: str, teacher: str,
                    request: dict[str, Any] | None) -> tuple[Verdict, JudgeCall | None]:
        """The verdict on one pair, and the call made for it (None when none was needed)."""
        early = precheck(student, teacher)
        if early is not None:
            return early, None
        student_first = self._rng.random() < 0.5
        first, second = (student, teacher) if student_first else (teacher, student)
        body = judge_body(self.model, judge_messages(request_text(request), first, second))
        started = time.perf_counter()
        resp: dict[str, Any] | None = None
        upstream_model: str | None = None
        status, error = 200, None
        try:
            resp, upstream_model = await asyncio.wait_for(self._ask(body), self._timeout_s)
        except TimeoutError:
            status, error = 504, f"no verdict within {self._timeout_s:g} s"
        except UpstreamFailure as f:
            status, error = f.status or 502, f"{f.kind}: {f}"
        call = JudgeCall(self.model, upstream_model, body, resp, status, error,
                         (time.perf_counter() - started) * 1000)
        if error is not None:
            return failure(error, None, student_first), call
        choices = (resp or {}).get("choices") or [{}]
        message = choices[0].get("message") if isinstance(choices[0], dict) else None
        reply = assistant_content(message) if isinstance(message, dict) else None
        return parse_verdict(reply, student_first), call


def judge_exchange(call: JudgeCall, *, task: str, key_id: str | None,
                   judged_request: str) -> Exchange:
    """The exchange that records a judge call: under the judged request's key (its tenant
    pays for it and only its reports show it), its task (for the task's judge cost), and
    `backend = 'judge'`, which discovery, curation and trace export never read."""
    return Exchange(
        request_id=f"{judged_request}:judge:{uuid.uuid4().hex[:8]}",
        created_at=call.created_at, endpoint="chat/completions", model=call.model,
        stream=False, request=call.body, status=call.status, key_id=key_id,
        upstream=call.model, upstream_model=call.upstream_model, backend=JUDGE_BACKEND,
        task=task, response=call.response, error=call.error, latency_ms=call.latency_ms,
        task_label=task, api=JUDGE_BACKEND,
    )
