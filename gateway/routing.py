"""The gateway's view of the tasks: which task a request belongs to and who serves it.

`RoutingTable.assign` places a request in one of its tenant's tasks (`task_assign`), and
`RoutingTable.decide` says who serves it. The table is rebuilt from the store's `tasks`
table every `students.refresh_s` seconds (stages are changed by the worker's gate and by
operators, never here), after each admin change, and on PostgreSQL at once when any process
changes a stage or pin (`NOTIFY slimgate_tasks`, heard on a connection of its own). Lookups
on the request path are dictionary reads; the decision itself is `policies.router.route`, a
pure function.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from gateway.answer_memory import MEMORY_VERSION, AnswerMemory
from gateway.config import Config
from gateway.embed import SharedEmbedder
from gateway.store.base import Notifying, Store
from gateway.store.catalog import TaskRecord, task_from_row
from gateway.store.stages import TASKS_CHANNEL
from gateway.students import StudentPool
from gateway.task_assign import Assignment, TaskAssigner
from gateway.upstream.base import Backend, Loadable
from policies.router import Route, route_task, sticky_key, student_share
from policies.settings import TaskPolicy
from policies.stages import CLIENT_STAGES, SERVING_STAGES

log = logging.getLogger("slimgate.routing")

NEAR_MISS = "near"  # a student's status while its held-out verdict is a near miss
TEACHER_ONLY = Route("teacher", shadow=False, audit=False)


@dataclass(frozen=True)
class TaskRoute:
    task: TaskRecord
    policy: TaskPolicy
    share_percent: float  # student share of the traffic at this stage/step
    near_miss: bool = False  # the student is a near miss: shadowed, never serving a client


@dataclass(frozen=True)
class Decision:
    task: str | None
    route: Route
    version: int | None
    student: Backend | None
    record: bool
    kind: str | None


class RoutingTable:
    def __init__(self, config: Config, store: Store, students: StudentPool,
                 embedder: SharedEmbedder) -> None:
        self._config = config
        self._embedder = embedder  # loaded only if a fingerprint miss needs a centroid
        self._store = store
        self._students = students
        self._routes: dict[str, TaskRoute] = {}
        self._assigner = TaskAssigner.from_tasks([])  # replaced whole on each refresh
        # Whether any task has a student in play; only then is a centroid lookup worth it.
        self.any_serving = False
        self._seen: tuple[tuple[str, float], ...] | None = None  # task rows last built from
        self._warming: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # set by a notification: refresh now, not at the timeout
        self.notified = 0  # task-change notifications heard (PostgreSQL)
        self._secret: bytes | None = None  # keys the sampling hashes; read from the store
        # The teacher's answers to exact repeats, per task (forgotten with the store's rows).
        self.memory = AnswerMemory(config.store.retention_days)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="slimgate-routing-refresh")
        if isinstance(self._store, Notifying):  # PostgreSQL: LISTEN beside the polling
            self._listener = asyncio.create_task(self._listen(self._store),
                                                 name="slimgate-routing-listen")

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("could not refresh the routing table")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._config.students.refresh_s)
            self._wake.clear()

    async def _listen(self, store: Notifying) -> None:
        """Refresh as soon as a stage or pin changes anywhere (`NOTIFY slimgate_tasks`).
        When the listening connection drops, polling every `refresh_s` goes on alone (and
        catches up on what was missed) until it is back."""
        while True:
            try:
                async for _ in store.notifications(TASKS_CHANNEL):
                    self.notified += 1
                    self._wake.set()
            except Exception as e:
                log.warning("listening for task changes failed (%s: %s); polling every %ss",
                            type(e).__name__, e, self._config.students.refresh_s)
            await asyncio.sleep(self._config.students.refresh_s)

    async def refresh(self) -> None:
        if self._secret is None:
            self._secret = await self._store.secret("sampling")
        await self.memory.refresh(self._store)
        rows = await self._store.tasks()
        tasks = [task_from_row(r) for r in rows]
        # Every stage change bumps updated_at; a student's status changes only beside one.
        seen = tuple((t.id, t.updated_at) for t in tasks)
        if seen == self._seen:
            return
        self._seen = seen
        routes = {}
        wanted: set[tuple[str, int]] = set()
        near = {r["id"] for r in rows if r.get("student_status") == NEAR_MISS}
        for t in tasks:
            policy = self._config.policy.for_task(t.id, t.label, t.pin)
            share = student_share(t.stage, t.step, policy.canary_steps, policy.pin)
            if t.id in near:
                share = 0.0
            routes[t.id] = TaskRoute(t, policy, share, t.id in near)
            if t.student_version and (t.stage in SERVING_STAGES or policy.pin == "student"):
                wanted.add((t.id, t.student_version))
        self._routes = routes
        self.any_serving = any(t.stage in SERVING_STAGES for t in tasks) or self.memory.serving
        self._assigner = TaskAssigner.from_tasks(tasks, embedder=self._embedder.get)
        await self._students.retain(wanted)
        # Models are loaded now, in the background, not by the first request that needs one.
        for task_id, version in wanted:
            backend = self._students.get(task_id, version)
            if isinstance(backend, Loadable):
                self._background(backend.load(), f"student {task_id} v{version}")
        if self.any_serving:
            self._background(self._assigner.warm(), "the task assigner's embedder")

    def _background(self, work: Any, what: str) -> None:
        async def run() -> None:
            try:
                await work
            except Exception as e:
                log.error("%s failed to load: %s", what, e)

        task = asyncio.create_task(run())
        self._warming.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._warming.discard)

    def task_label(self, task_id: str | None) -> str:
        """The task as a metric label: known tasks by id, any other name as "other" (client-
        chosen names must not grow the label set without bound), none as ""."""
        if not task_id:
            return ""
        return task_id if task_id in self._routes else "other"

    def task(self, task_id: str | None) -> TaskRecord | None:
        """The task as routed now (its stage and label), if known."""
        r = self._routes.get(task_id or "")
        return r.task if r else None

    def policy_for(self, task_id: str | None, label: str = "") -> TaskPolicy:
        r = self._routes.get(task_id or "")
        return r.policy if r else self._config.policy.for_task(task_id or "", label)

    async def assign(self, body: dict[str, Any], header_task: str | None,
                     namespace: str | None) -> Assignment:
        """The task among `namespace`'s that a request belongs to: the client's tag, its
        fingerprint or template; on a miss, while a student is in play anywhere, a prompt one
        edit away or the nearest centroid (in a worker thread). Raises InvalidTaskTag."""
        assigner = self._assigner  # a refresh during the search replaces the table's, not this
        assignment, key = assigner.lookup(body, header_task, namespace)
        if assignment.task is None and key is not None and self.any_serving:
            assignment = await assigner.search(body, key)
        return assignment

    def decide(
        self,
        assignment: Assignment,
        body: dict[str, Any],
        headers: Mapping[str, str],
        request_id: str,
    ) -> Decision:
        task_id = assignment.task
        r = self._routes.get(task_id or "")
        if r is None:  # no task, or one not discovered yet: the teacher serves
            return Decision(task_id, TEACHER_ONLY, None, None, self.policy_for(task_id).record,
                            None)
        t, policy, stage = r.task, r.policy, r.task.stage
        if r.near_miss and (stage in CLIENT_STAGES or policy.pin == "student"):
            # A near miss proves itself in shadow: whatever put it further (an operator, a
            # pin), it serves no client until the gate has promoted it (status "passed").
            stage = "shadow" if stage in SERVING_STAGES else "observe"
            policy = replace(policy, pin=None)
        remembered = self._from_memory(r, body, headers, request_id)
        if remembered is not None:
            return remembered
        version = t.student_version
        student = None
        if version and (stage in SERVING_STAGES or policy.pin == "student"):
            student = self._students.get(t.id, version)
        # Only a canary splits by conversation; elsewhere the key is not worth computing.
        key = (sticky_key(body, headers, policy.sticky, request_id) if stage == "canary"
               else request_id)
        decision = route_task(policy, stage=stage, step=t.step, sticky_key=key,
                              request_id=request_id, has_student=student is not None,
                              secret=self._secret or b"")
        return Decision(t.id, decision, version, student, policy.record, t.kind)

    def _from_memory(self, r: TaskRoute, body: dict[str, Any], headers: Mapping[str, str],
                     request_id: str) -> Decision | None:
        """The answer memory's decision, where its stage gives it this request and it holds
        the answer: it answers first, before the task's student or teacher."""
        track = self.memory.track(r.task.id)
        policy = r.policy
        if (track is None or track.stage not in CLIENT_STAGES or policy.pin is not None
                or not policy.answer_memory):
            return None
        key = (sticky_key(body, headers, policy.sticky, request_id) if track.stage == "canary"
               else request_id)
        decision = route_task(replace(policy, shadow_rate=0.0), stage=track.stage,
                              step=track.step, sticky_key=key, request_id=request_id,
                              has_student=True, secret=self._secret or b"")
        if decision.serve != "student":
            return None
        answer = self.memory.lookup(r.task.id, r.task.kind, body)
        if answer is None:
            return None
        return Decision(r.task.id, decision, MEMORY_VERSION, answer, policy.record, r.task.kind)

    async def aclose(self) -> None:
        for task in (self._task, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
