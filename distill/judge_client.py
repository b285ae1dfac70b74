"""The worker's judge client: held-out free-text pairs judged by the teacher.

Where a task's policy says `text_judge = "teacher"`, held-out evaluation hands its free-text
pairs to a `HeldoutJudge`: at most `text_judge_heldout_max` of them (a seeded sample when
there are more; the rest are no evidence), `text_judge_concurrency` calls at once, through
the configured upstreams (retries, fallbacks). Each call is written to the store as a
`backend = 'judge'` exchange of the task, priced, and never read as traffic or training data.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gateway.config import Config, ModelConfig
from gateway.cost import CostTable
from gateway.judge import JUDGE_BACKEND, Ask, JudgeCall, JudgeUsage, TeacherJudge
from gateway.store.db import Connection
from policies.judge import Verdict, failure
from policies.settings import TaskPolicy

Item = tuple[str, str, dict[str, Any] | None]  # student text, teacher text, the request
Close = Callable[[], Awaitable[None]]
AskFactory = Callable[[ModelConfig], Awaitable[tuple[Ask, Close]]]


def teacher_model(con: Connection, task_id: str) -> str | None:
    """The model the task's clients named on its newest teacher-served request."""
    row = con.execute("SELECT model FROM exchanges WHERE task = ? AND backend = 'teacher' "
                      "ORDER BY seq DESC LIMIT 1", (task_id,)).fetchone()
    return str(row[0]) if row else None


async def upstream_ask(cfg: Config, model: ModelConfig) -> tuple[Ask, Close]:
    """An `Ask` through the configured upstreams (own session), and how to close it."""
    import aiohttp

    from gateway.upstream.pool import Upstreams, build_backend

    session = aiohttp.ClientSession()
    upstreams = Upstreams(cfg, {m.name: build_backend(m, session) for m in cfg.models})

    async def ask(body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        resp, served = await upstreams.complete(model, "chat/completions", body)
        return resp, served.model.upstream_model

    async def close() -> None:
        await upstreams.aclose()
        await session.close()

    return ask, close


class HeldoutJudge:
    """Judges one evaluation's free-text pairs; `usage` says what it cost."""

    def __init__(self, cfg: Config, policy: TaskPolicy, *, task: str, model: str | None,
                 con: Connection | None, seed: int = 0,
                 ask_factory: AskFactory | None = None) -> None:
        self._cfg = cfg
        self._policy = policy
        self._task = task
        self._model_name = cfg.policy.text_judge_model or model
        self._con = con
        self._rng = random.Random(seed)
        self._ask_factory = ask_factory or (lambda m: upstream_ask(cfg, m))
        self._costs = CostTable()
        self.usage = JudgeUsage()
        self.unjudged = 0  # pairs past the budget: no evidence either way

    def __call__(self, items: list[Item]) -> list[Verdict | None]:
        """A verdict per pair (None: not judged, past the budget), in order."""
        budget = self._policy.text_judge_heldout_max
        chosen = set(range(len(items)))
        if len(items) > budget:  # a sample chosen before any answer is read: no bias
            chosen = set(self._rng.sample(range(len(items)), budget))
        self.unjudged += len(items) - len(chosen)
        model = self._cfg.model(self._model_name) if self._model_name else None
        if model is None:
            why = failure(f"no configured model {self._model_name!r} to judge with")
            return [why if i in chosen else None for i in range(len(items))]
        return asyncio.run(self._judge_all(model, items, chosen))

    async def _judge_all(self, model: ModelConfig, items: list[Item],
                         chosen: set[int]) -> list[Verdict | None]:
        ask, close = await self._ask_factory(model)
        judge = TeacherJudge(ask, model.name, timeout_s=self._cfg.policy.text_judge_timeout_s,
                             rng=self._rng)
        gate = asyncio.Semaphore(self._cfg.policy.text_judge_concurrency)
        calls: list[tuple[JudgeCall, Verdict]] = []

        async def one(item: Item) -> Verdict:
            async with gate:
                verdict, call = await judge.judge(*item)
            if call is not None:
                calls.append((call, verdict))
            return verdict

        try:
            # Each order is drawn when its pair enters the gate, and the gate lets pairs in
            # first come first served, so orders follow item order: seeded, reproducible.
            todo = {i: asyncio.ensure_future(one(items[i])) for i in sorted(chosen)}
            done = {i: await t for i, t in todo.items()}
        finally:
            await close()
        self._record(calls)
        return [done.get(i) for i in range(len(items))]

    def _bodies(self, call: JudgeCall) -> tuple[str | None, str | None]:
        """The call's JSON bodies as the store's settings allow (kept, scrubbed or not kept)."""
        if not self._cfg.store.record_requests:
            return None, None
        request = orjson.dumps(call.body).decode()
        response = orjson.dumps(call.response).decode() if call.response is not None else None
        if self._cfg.store.scrub:
            from gateway.privacy.scrub import scrub_texts

            texts, _ = scrub_texts([request, response or ""])
            request, response = texts[0], (texts[1] if response is not None else None)
        return request, response

    def _record(self, calls: list[tuple[JudgeCall, Verdict]]) -> None:
        rows = []
        for call, verdict in calls:
            cost = None
            if call.upstream_model and call.status < 400:
                cost = self._costs.estimate(call.upstream_model, call.prompt_tokens,
                                            call.completion_tokens)
            self.usage.add(call, verdict, cost)
            rows.append((
                f"heldout:{self._task}:judge:{uuid.uuid4().hex[:8]}", call.created_at,
                None, "chat/completions", call.model, call.model, JUDGE_BACKEND, self._task, 0,
                *self._bodies(call), call.status, call.error, call.latency_ms,
                call.prompt_tokens or None, call.completion_tokens or None, cost, JUDGE_BACKEND,
            ))
        if self._con is not None and rows:
            self._con.execute("BEGIN")
            self._con.executemany(
                "INSERT INTO exchanges (request_id, created_at, key_id, endpoint, model, "
                "upstream, backend, task, stream, request, response, status, error, latency_ms, "
                "prompt_tokens, completion_tokens, cost_usd, api) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._con.execute("COMMIT")
