"""Everything the app holds while it runs, built and torn down by the lifespan."""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp
from fastapi import Request

from gateway.admin.auth import AdminAuth
from gateway.auth import KeyRing
from gateway.config import Config
from gateway.metrics import Metrics
from gateway.ratelimit import RateLimiter
from gateway.routing import RoutingTable
from gateway.serving import Proxy, RequestContext
from gateway.shadow import ShadowRunner
from gateway.store.recorder import Recorder
from gateway.store.sqlite import Store
from gateway.students import StudentPool
from gateway.upstream.pool import Upstreams


@dataclass
class AppState:
    config: Config
    keys: KeyRing
    metrics: Metrics
    store: Store
    recorder: Recorder
    session: aiohttp.ClientSession
    upstreams: Upstreams
    proxy: Proxy
    limiter: RateLimiter
    routing: RoutingTable
    shadow: ShadowRunner
    students: StudentPool
    admin: AdminAuth  # admin keys and dashboard sessions

    def begin(self, request: Request) -> RequestContext:
        """Authenticate and open the context of one API request."""
        key_id = self.keys.check(request.headers.get("authorization"))
        caller = key_id or (request.client.host if request.client else "unknown")
        self.limiter.admit(caller)
        return RequestContext(
            request_id=request.state.request_id,
            key_id=key_id,
            caller=caller,
            created_at=time.time(),
            started=time.perf_counter(),
            headers=request.headers,
        )


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.slimgate
    return state
