"""Shadow and audit comparisons, run in the background with bounded queue and concurrency.

Shadow: the teacher served; the student answers the same request and is compared.
Audit: the student served; the teacher answers and is compared. Either way the reply has
already left: a slow or failing student never delays it. A full queue drops the job and
counts it (`slimgate_shadow_dropped_total`); replies are never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from gateway.config import Config, ModelConfig
from gateway.judge import TeacherJudge, judge_exchange
from gateway.metrics import Metrics
from gateway.similarity import TextSimilarity
from gateway.store.recorder import LiveComparison, Recorder
from gateway.upstream.base import Backend, UpstreamFailure
from gateway.upstream.pool import Upstreams
from policies.code_text import is_code
from policies.compare import Comparison, NotComparable, compare, texts_identical
from policies.judge import failure, judged_comparison, sampled, text_pair
from policies.settings import TaskPolicy

log = logging.getLogger("slimgate.shadow")


@dataclass(slots=True)
class Job:
    mode: Literal["shadow", "audit"]
    task: str
    version: int
    kind: str
    request_id: str
    body: dict[str, Any]  # what the upstream got, not streamed
    served: dict[str, Any]  # the assistant message the client got
    served_ms: float
    served_tokens: int | None
    student: Backend | None = None  # shadow: the student to ask
    teacher: ModelConfig | None = None  # audit: the teacher to ask
    key_id: str | None = None  # the client's key: a judge call is recorded under it


def first_message(resp: dict[str, Any]) -> dict[str, Any]:
    choices = resp.get("choices") or [{}]
    return dict(choices[0].get("message") or {})


def completion_tokens(resp: dict[str, Any]) -> int | None:
    usage = resp.get("usage") or {}
    value = usage.get("completion_tokens")
    return int(value) if value is not None else None


class ShadowRunner:
    def __init__(
        self, config: Config, upstreams: Upstreams, recorder: Recorder, metrics: Metrics,
        similarity: TextSimilarity, policy_for: Callable[[str], TaskPolicy] | None = None,
    ) -> None:
        self._config = config
        self._upstreams = upstreams
        self._recorder = recorder
        self._metrics = metrics
        self._queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=config.students.shadow_queue)
        self._workers: list[asyncio.Task[None]] = []
        self._similarity = similarity
        self._policy_for = policy_for or (lambda task: config.policy.for_task(task))

    def start(self) -> None:
        for i in range(self._config.students.shadow_concurrency):
            self._workers.append(asyncio.create_task(self._work(), name=f"slimgate-shadow-{i}"))

    def submit(self, job: Job) -> bool:
        """Queue a comparison; False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self._metrics.shadow_dropped.labels(job.mode).inc()
            return False
        self._metrics.shadow_queue_depth.set(self._queue.qsize())
        return True

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            self._metrics.shadow_queue_depth.set(self._queue.qsize())
            try:
                outcome = await self._run(job)
            except Exception:
                log.exception("%s comparison for %s failed", job.mode, job.request_id)
                outcome = "error"
            finally:
                self._queue.task_done()
            self._metrics.shadow_jobs.labels(job.task, job.mode, outcome).inc()

    async def _ask(self, job: Job) -> tuple[dict[str, Any], float]:
        started = time.perf_counter()
        if job.mode == "shadow":
            assert job.student is not None
            resp = await job.student.complete("chat/completions", job.body)
        else:
            assert job.teacher is not None
            resp, _ = await self._upstreams.complete(job.teacher, "chat/completions", job.body)
        return resp, (time.perf_counter() - started) * 1000

    async def _run(self, job: Job) -> str:
        policy = self._policy_for(job.task)
        judging = policy.text_judge == "teacher"
        if judging and job.kind == "text" and not sampled(job.request_id, policy.text_judge_rate):
            return "not_sampled"  # judged comparisons only: nobody is asked for this one
        try:
            resp, ms = await self._ask(job)
        except UpstreamFailure as f:
            if job.mode == "audit":
                return "teacher_failed"  # says nothing about the student
            # A student that fails in shadow has disagreed: that is evidence too.
            self._record(job, None, job.served, None, job.served_ms, None, job.served_tokens,
                         score=0.0, agree=False, valid=False, detail=f"student failed: {f}")
            return "student_failed"
        other = first_message(resp)
        tokens = completion_tokens(resp)
        student, teacher = (other, job.served) if job.mode == "shadow" else (job.served, other)
        pair = text_pair(job.kind, student, teacher) if judging else None
        try:
            if pair is not None:
                if not sampled(job.request_id, policy.text_judge_rate):
                    return "not_sampled"
                result = await self._judged(job, student, teacher, pair)
            else:
                result = await self._compared(job, student, teacher)
        except NotComparable:
            return "not_comparable"  # the teacher's own answer is no usable reference
        except TimeoutError:
            return "contract_timeout"  # cannot be judged within bounds: no evidence either way
        s_ms, t_ms = (ms, job.served_ms) if job.mode == "shadow" else (job.served_ms, ms)
        s_tok, t_tok = (
            (tokens, job.served_tokens) if job.mode == "shadow" else (job.served_tokens, tokens)
        )
        self._record(job, student, teacher, s_ms, t_ms, s_tok, t_tok, score=result.score,
                     agree=result.agree, valid=result.valid, detail=result.detail)
        if result.detail.startswith("judge failure"):
            return "judge_failed"  # recorded as a disagreement: a failure never agrees
        return "agree" if result.agree else "disagree"

    async def _compared(self, job: Job, student: dict[str, Any],
                        teacher: dict[str, Any]) -> Comparison:
        similarity = None
        a, b = str(student.get("content") or ""), str(teacher.get("content") or "")
        # code needs no embedding: compare() checks its tokens (policies.code_text)
        if job.kind in ("text", "tool_call") and a.strip() and b.strip() and not is_code(b):
            similarity = 1.0 if texts_identical(a, b) else await self._similarity(a, b)
        # compare() checks the request's contract (client schemas): off the event loop,
        # with the same deadline as on the request path.
        return await asyncio.wait_for(asyncio.to_thread(
            compare, job.kind, student, teacher, request=job.body, similarity=similarity,
            text_threshold=self._config.distill.text_similarity,
        ), self._config.students.contract_timeout_s)

    async def _judged(self, job: Job, student: dict[str, Any], teacher: dict[str, Any],
                      pair: tuple[str, str]) -> Comparison:
        """The teacher's verdict on a sampled free-text pair (its call recorded under the
        request's own key and task), with the request's contract checked as for any pair."""
        name = self._config.policy.text_judge_model or str(job.body.get("model") or "")
        model = self._config.model(name)
        if model is None:  # the request named a model this config no longer has
            verdict, call = failure(f"no configured model {name!r} to judge with"), None
        else:
            judge = TeacherJudge(partial(self._ask_judge, model), model.name,
                                 timeout_s=self._config.policy.text_judge_timeout_s)
            verdict, call = await judge.judge(pair[0], pair[1], job.body)
        if call is not None:
            self._recorder.record(judge_exchange(call, task=job.task, key_id=job.key_id,
                                                 judged_request=job.request_id))
        return await asyncio.wait_for(asyncio.to_thread(
            judged_comparison, job.kind, student, teacher, job.body, verdict,
        ), self._config.students.contract_timeout_s)

    async def _ask_judge(self, model: ModelConfig,
                         body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        resp, served = await self._upstreams.complete(model, "chat/completions", body)
        return resp, served.model.upstream_model

    def _record(
        self, job: Job, student: dict[str, Any] | None, teacher: dict[str, Any] | None,
        student_ms: float | None, teacher_ms: float | None, student_tokens: int | None,
        teacher_tokens: int | None, *, score: float, agree: bool, valid: bool, detail: str,
    ) -> None:
        self._recorder.record(LiveComparison(
            created_at=time.time(), task=job.task, version=job.version, mode=job.mode,
            request_id=job.request_id, score=score, agree=agree, valid=valid, detail=detail,
            student=student, teacher=teacher, student_ms=student_ms, teacher_ms=teacher_ms,
            student_tokens=student_tokens, teacher_tokens=teacher_tokens,
        ))

    async def drain(self) -> None:
        """Wait until every queued comparison has run (tests, shutdown)."""
        await self._queue.join()

    async def aclose(self) -> None:
        for w in self._workers:
            w.cancel()
        for w in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await w
