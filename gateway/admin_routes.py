"""Admin API: tasks, operator overrides and the audit log (admin key required).

Thin handlers over `gateway.operator`, run in a worker thread on their own sqlite3
connection; after a change the routing table is refreshed at once, so the next request
already follows it. Task ids in paths are validated before they reach anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Literal, TypeVar

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from gateway import operator
from gateway.admin_auth import require_admin
from gateway.errors import InvalidRequest, NotFound
from gateway.state import get_state
from gateway.store.catalog import list_students, list_tasks
from gateway.store.migrations import connect
from gateway.store.stages import stage_changes
from gateway.task_assign import TASK_ID

router = APIRouter(prefix="/admin", tags=["admin"])
T = TypeVar("T")


class OverrideBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = ""


class PinBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: Literal["teacher", "student"] = "teacher"


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json",
                    headers={"cache-control": "no-store"})


def _task_id(task_id: str) -> str:
    if not TASK_ID.match(task_id):
        raise InvalidRequest(f"'{task_id[:80]}' is not a valid task id.", param="task_id")
    return task_id


async def _with_store(request: Request, work: Callable[[Any], T]) -> T:
    state = get_state(request)

    def run() -> T:
        con = connect(state.config.store.path)
        try:
            return work(con)
        finally:
            con.close()

    try:
        result = await asyncio.to_thread(run)
    except operator.OperatorError as e:
        if "does not exist" in str(e):
            raise NotFound(str(e), param="task_id") from None
        raise InvalidRequest(str(e), param="task_id") from None
    await state.routing.refresh()
    return result


async def _body(request: Request, model: type[BaseModel]) -> Any:
    raw = await request.body()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValueError as e:
        raise InvalidRequest(f"Invalid body: {e}", param=None) from None


@router.get("/tasks")
async def tasks(request: Request) -> Response:
    require_admin(request)

    def read(con: Any) -> list[dict[str, Any]]:
        out = []
        for t in list_tasks(con):
            row = asdict(t)
            row.pop("info")
            row["students"] = [{"version": s.version, "base_model": s.base_model,
                                "status": s.status, "heldout": {
                                    k: s.metrics.get(k) for k in ("n", "agreement", "lower",
                                                                  "upper", "valid_rate")}}
                               for s in list_students(con, t.id)]
            out.append(row)
        return out

    return _json({"object": "list", "data": await _with_store(request, read)})


@router.get("/audit")
async def audit(request: Request, task: str | None = None, limit: int = 200) -> Response:
    require_admin(request)
    if task is not None:
        _task_id(task)
    changes = await _with_store(request, lambda con: stage_changes(con, task, min(limit, 5000)))
    return _json({"object": "list", "data": [asdict(c) for c in changes]})


@router.post("/tasks/{task_id}/promote")
async def promote(task_id: str, request: Request) -> Response:
    require_admin(request)
    body = await _body(request, OverrideBody)
    steps = list(get_state(request).config.policy.canary_steps)
    change = await _with_store(
        request, lambda con: operator.promote(con, _task_id(task_id), steps, body.reason))
    return _json(asdict(change))


@router.post("/tasks/{task_id}/rollback")
async def rollback(task_id: str, request: Request) -> Response:
    require_admin(request)
    body = await _body(request, OverrideBody)
    change = await _with_store(
        request, lambda con: operator.rollback(con, _task_id(task_id), body.reason))
    return _json(asdict(change))


@router.post("/tasks/{task_id}/pin")
async def pin(task_id: str, request: Request) -> Response:
    require_admin(request)
    body = await _body(request, PinBody)
    await _with_store(request, lambda con: operator.pin(con, _task_id(task_id), body.to))
    return _json({"task": task_id, "pin": body.to})


@router.post("/tasks/{task_id}/unpin")
async def unpin(task_id: str, request: Request) -> Response:
    require_admin(request)
    await _with_store(request, lambda con: operator.unpin(con, _task_id(task_id)))
    return _json({"task": task_id, "pin": None})
