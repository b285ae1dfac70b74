"""Everything the app holds while it runs, built and torn down by the lifespan."""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp
from fastapi import Request

from gateway.admin.auth import AdminAuth
from gateway.auth import ClientAddresses, KeyRing
from gateway.config import Config
from gateway.errors import Forbidden, Unauthorized
from gateway.metrics import Metrics
from gateway.proxy import Proxy, RequestContext
from gateway.ratelimit import AuthFailures, RateLimiter
from gateway.responses.service import ResponsesService
from gateway.routing import RoutingTable
from gateway.shadow import ShadowRunner
from gateway.store.base import Store
from gateway.store.recorder import Recorder
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
    responses: ResponsesService
    admin: AdminAuth  # admin keys and dashboard sessions
    metrics_keys: KeyRing  # who may read /metrics besides admins
    auth_failures: AuthFailures  # wrong keys per client address
    addresses: ClientAddresses  # a request's client address (trusted proxies believed)

    async def begin(self, request: Request) -> RequestContext:
        """Authenticate and open the context of one API request."""
        address = self.addresses.of(request)
        key_id = self.auth_failures.guard(
            address, lambda: self.keys.check(request.headers.get("authorization")))
        caller = key_id or address
        await self.limiter.admit(caller)
        return RequestContext(
            request_id=request.state.request_id,
            key_id=key_id,
            caller=caller,
            created_at=time.time(),
            started=time.perf_counter(),
            headers=request.headers,
        )


    def check_metrics_reader(self, request: Request) -> None:
        """/metrics: open with `server.metrics_public`, else a metrics or an admin key."""
        if self.config.server.metrics_public:
            return
        if not (self.metrics_keys.enabled or self.admin.ring.enabled):
            raise Forbidden(
                f"/metrics is closed until {self.config.server.metrics_keys_env} (metrics keys) "
                f"or {self.config.server.admin_keys_env} is set, or server.metrics_public is "
                "true.", code="metrics_disabled")
        authorization = request.headers.get("authorization")

        def check() -> None:
            if self.metrics_keys.enabled:
                try:
                    self.metrics_keys.check(authorization)
                    return
                except Unauthorized:
                    if not self.admin.ring.enabled:
                        raise
            self.admin.check(authorization)

        self.auth_failures.guard(self.addresses.of(request), check)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.slimgate
    return state
