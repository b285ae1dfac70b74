"""Admin report routes: `GET /dashboard` (the HTML report, live), its rename form's
`POST /dashboard/tasks/{id}/rename`, and `GET /admin/report` (JSON).

Both need an admin key (gateway/admin_auth.py). The report is built from the store in a
worker thread, so a large store never blocks the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.admin import overrides
from gateway.admin.auth import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    admin_auth,
    check_admin_key,
    require_admin,
)
from gateway.admin.routes import admin_actor, valid_task_id, with_store
from gateway.errors import Forbidden, InvalidRequest
from gateway.report import build_report, dumps, parse_since, policy_numbers, render_html
from gateway.report.html import task_slug

router = APIRouter(tags=["admin"])

Since = Annotated[str | None, Query(description="unix seconds, or a span back: 90m, 24h, 7d")]
Worst = Annotated[int, Query(ge=0, le=100, description="worst disagreements per source and task")]
Buckets = Annotated[int, Query(ge=1, le=500, description="time buckets of the charts")]

# The page has no script at all and loads nothing: forbid both outright.
PAGE_HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}
# The live page's only form (rename a task) posts back to this origin; nothing else.
LIVE_PAGE_HEADERS = {**PAGE_HEADERS, "content-security-policy": PAGE_HEADERS[
    "content-security-policy"].replace("form-action 'none'", "form-action 'self'")}


Imported = Annotated[bool, Query(description="count `traces import` history as traffic")]


def _options(request: Request, since: str | None, worst: int, buckets: int,
             imported: bool = False) -> dict[str, Any]:
    try:
        since_ts = parse_since(since)
    except ValueError as e:
        raise InvalidRequest(str(e), param="since") from None
    config = request.app.state.slimgate.config
    return {"store": config.store, "since": since_ts, "worst": worst,
            "buckets": buckets, "imported": imported, **policy_numbers(config)}


@router.get("/admin/report")
async def report_json(
    request: Request, since: Since = None, worst: Worst = 10, buckets: Buckets = 40,
    imported: Imported = False,
) -> Response:
    require_admin(request)
    options = _options(request, since, worst, buckets, imported)
    body = await asyncio.to_thread(lambda: dumps(build_report(**options)))
    return Response(body, media_type="application/json", headers={"cache-control": "no-store"})


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(
    request: Request,
    key: Annotated[str | None, Query(description="admin key, traded for a session cookie")] = None,
    since: Since = None,
    worst: Worst = 10,
    buckets: Buckets = 40,
    refresh: Annotated[int, Query(ge=0, le=3600, description="reload every N s; 0: never")] = 60,
    imported: Imported = False,
) -> Response:
    if key is not None:  # a browser logging in: set the cookie, drop the key from the URL
        auth = admin_auth(request)
        check_admin_key(request, key)
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != "key"]
        target = "/dashboard" + (f"?{urlencode(rest)}" if rest else "")
        response = RedirectResponse(target, status_code=303, headers=PAGE_HEADERS)
        response.set_cookie(
            SESSION_COOKIE, auth.session(), max_age=SESSION_SECONDS, path="/dashboard",
            httponly=True, samesite="strict", secure=request.url.scheme == "https",
        )
        return response
    require_admin(request)
    options = _options(request, since, worst, buckets, imported)
    page = await asyncio.to_thread(
        lambda: render_html(build_report(**options), refresh_seconds=refresh or None,
                            rename_forms=True)
    )
    return HTMLResponse(page, headers=LIVE_PAGE_HEADERS)


def _same_origin(request: Request) -> None:
    """A form post from the dashboard itself: the session cookie is SameSite=Strict, and
    a browser's Origin / Sec-Fetch-Site must say so too (another site's form is refused)."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if site not in (None, "same-origin") or (
            origin is not None and urlsplit(origin).netloc != request.headers.get("host")):
        raise Forbidden("The dashboard accepts forms from its own pages only.")


@router.post("/dashboard/tasks/{task_id}/rename")
async def rename_task(task_id: str, request: Request) -> Response:
    actor = admin_actor(require_admin(request))
    _same_origin(request)
    form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=4)
    name = (form.get("name") or [""])[0]
    task = await with_store(
        request, lambda con: overrides.rename(con, valid_task_id(task_id), name, actor))
    return RedirectResponse("/dashboard#task-" + task_slug(task.id), status_code=303,
                            headers=PAGE_HEADERS)
