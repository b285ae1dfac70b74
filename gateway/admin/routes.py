"""Admin API: tasks, operator overrides, renames and the audit log (admin key required).

Thin handlers over `gateway.admin.overrides` (changes and the tasks view), run in a
worker thread on their own sqlite3 connection; after a change the routing table is
refreshed at once, so the next request already follows it. Task ids in paths are
validated before they reach anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from gateway.admin import overrides
from gateway.admin.auth import require_admin
from gateway.app_state import get_state
from gateway.errors import InvalidRequest, NotFound
from gateway.store.db import connect
from gateway.store.stages import stage_changes
from gateway.task_ids import is_task_id
from policies.settings import Pin

router = APIRouter(prefix="/admin", tags=["admin"])
T = TypeVar("T")


class OverrideBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = ""


class RenameBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


class PinBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: Pin = "teacher"


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json",
                    headers={"cache-control": "no-store"})


def valid_task_id(task_id: str) -> str:
    if not is_task_id(task_id):
        raise InvalidRequest(f"'{task_id[:80]}' is not a valid task id.", param="task_id")
    return task_id


def admin_actor(key_id: str) -> str:
    """Who acted, for the audit log: the admin key's id (12 hex digits of its hash)."""
    return f"admin:{key_id}"


async def with_store(request: Request, work: Callable[[Any], T]) -> T:
    state = get_state(request)

    def run() -> T:
        con = connect(state.config.store)
        try:
            return work(con)
        finally:
            con.close()

    try:
        result = await asyncio.to_thread(run)
    except overrides.UnknownTask as e:
        raise NotFound(str(e), param="task_id") from None
    except overrides.BadName as e:
        raise InvalidRequest(str(e), param="name") from None
    except overrides.OperatorError as e:
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

    return _json({"object": "list", "data": await with_store(request, overrides.task_rows)})


@router.get("/audit")
async def audit(request: Request, task: str | None = None, limit: int = 200) -> Response:
    require_admin(request)
    if task is not None:
        valid_task_id(task)
    if not 1 <= limit <= 5000:
        raise InvalidRequest(f"limit must be between 1 and 5000, got {limit}.", param="limit")
    changes = await with_store(request, lambda con: stage_changes(con, task, limit))
    return _json({"object": "list", "data": [asdict(c) for c in changes]})


@router.post("/tasks/{task_id}/promote")
async def promote(task_id: str, request: Request) -> Response:
    actor = admin_actor(require_admin(request))
    body = await _body(request, OverrideBody)
    steps = list(get_state(request).config.policy.canary_steps)
    change = await with_store(
        request,
        lambda con: overrides.promote(con, valid_task_id(task_id), steps, body.reason, actor))
    return _json(asdict(change))


@router.post("/tasks/{task_id}/rollback")
async def rollback(task_id: str, request: Request) -> Response:
    actor = admin_actor(require_admin(request))
    body = await _body(request, OverrideBody)
    change = await with_store(
        request, lambda con: overrides.rollback(con, valid_task_id(task_id), body.reason, actor))
    return _json(asdict(change))


@router.post("/tasks/{task_id}/pin")
async def pin(task_id: str, request: Request) -> Response:
    actor = admin_actor(require_admin(request))
    body = await _body(request, PinBody)
    await with_store(request,
                     lambda con: overrides.pin(con, valid_task_id(task_id), body.to, actor))
    return _json({"task": task_id, "pin": body.to})


@router.post("/tasks/{task_id}/unpin")
async def unpin(task_id: str, request: Request) -> Response:
    actor = admin_actor(require_admin(request))
    await with_store(request, lambda con: overrides.unpin(con, valid_task_id(task_id), actor))
    return _json({"task": task_id, "pin": None})


@router.post("/tasks/{task_id}/rename")
async def rename(task_id: str, request: Request) -> Response:
    actor = admin_actor(require_admin(request))
    body = await _body(request, RenameBody)
    task = await with_store(
        request, lambda con: overrides.rename(con, valid_task_id(task_id), body.name, actor))
    return _json({"task": task.id, "label": task.label, "named_by": task.named_by})
