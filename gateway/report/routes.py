"""Admin report routes: `GET /dashboard` (the HTML report, live) and `GET /admin/report` (JSON).

Both need an admin key (gateway/admin_auth.py). The report is built from the store in a
worker thread, so a large store never blocks the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.admin.auth import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    admin_auth,
    check_admin_key,
    require_admin,
)
from gateway.errors import InvalidRequest
from gateway.report import build_report, dumps, parse_since, policy_numbers, render_html

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
        lambda: render_html(build_report(**options), refresh_seconds=refresh or None)
    )
    return HTMLResponse(page, headers=PAGE_HEADERS)
