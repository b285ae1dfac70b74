"""Operational routes: liveness, readiness and Prometheus metrics (behind a key by default)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.app_state import get_state
from gateway.metrics import CONTENT_TYPE

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    state = get_state(request)
    store_ok = await state.store.ping()
    models = len(state.config.models)
    ready = store_ok and models > 0
    body = {
        "status": "ready" if ready else "not_ready",
        "store": "ok" if store_ok else "unavailable",
        "models": models,
        "record_queue": state.recorder.pending,
    }
    return Response(orjson.dumps(body), status_code=200 if ready else 503,
                    media_type="application/json")


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text; a metrics or admin key unless `server.metrics_public` (it names tasks)."""
    state = get_state(request)
    state.check_metrics_reader(request)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
