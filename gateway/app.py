"""`create_app(config)`: the FastAPI application and the lifespan that owns its resources.

The lifespan opens the store, starts the recorder, builds one pooled HTTP session and
the upstream backends, and closes them in reverse order on shutdown (flushing records).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from gateway import ops_routes
from gateway.admin import routes as admin_routes
from gateway.admin.auth import AdminAuth
from gateway.app_state import AppState
from gateway.auth import ClientAddresses, KeyRing
from gateway.config import Config
from gateway.embed import SharedEmbedder
from gateway.errors import install_error_handlers
from gateway.litellm_module import import_litellm
from gateway.loop_lag import FrozenStartupHeap, LoopLagMonitor
from gateway.metrics import Metrics
from gateway.openai import routes as openai_routes
from gateway.protocol.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from gateway.protocol.responses import ResponsesRequest
from gateway.proxy import Proxy
from gateway.ratelimit import AuthFailures
from gateway.ratelimit_redis import build_limiter
from gateway.report import routes as report_routes
from gateway.requestid import RequestIdMiddleware
from gateway.responses import routes as responses_routes
from gateway.responses.conversations import Conversations
from gateway.responses.service import ResponsesService
from gateway.routing import RoutingTable
from gateway.shadow import ShadowRunner
from gateway.similarity import TextSimilarity
from gateway.store.base import open_store
from gateway.store.recorder import Recorder
from gateway.students import StudentFactory, StudentPool
from gateway.upstream.base import UpstreamFailure
from gateway.upstream.litellm_backend import check_litellm_models
from gateway.upstream.pool import Upstreams, build_backend
from gateway.worker_process import start_worker, stop_worker

log = logging.getLogger("slimgate")

# The request bodies the routers validate by hand, documented in the OpenAPI schema.
BODY_MODELS: dict[str, type[Any]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/completions": CompletionRequest,
    "/v1/embeddings": EmbeddingRequest,
    "/v1/responses": ResponsesRequest,
}


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    config: Config = app.state.config
    # litellm is imported now, not on the first request or record, so its ~2 s import
    # never stalls the event loop while traffic is flowing.
    import_litellm()
    check_litellm_models(config)  # an unknown provider or a steering extra field fails here
    metrics = Metrics()
    store = await open_store(config.store)
    recorder = Recorder(
        store, metrics,
        queue_size=config.store.queue_size,
        batch_size=config.store.batch_size,
        record_bodies=config.store.record_requests,
        durable=config.store.durability == "sync",
        scrub=config.store.scrub,
        dedupe_static=config.store.dedupe_static,
    )
    recorder.start()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=256, keepalive_timeout=60),
    )

    def count_failure(model: Any, f: UpstreamFailure) -> None:
        metrics.upstream_errors.labels(model.name, f.kind).inc()

    backends = {m.name: build_backend(m, session) for m in config.models}
    upstreams = Upstreams(config, backends, on_failure=count_failure)
    limiter = build_limiter(config.server.rate_limit, metrics.registry)
    students = StudentPool(config, session, app.state.student_factory,
                           load_student=app.state.load_student)
    embedder = SharedEmbedder()  # all-MiniLM-L6-v2, loaded only when first needed
    routing = RoutingTable(config, store, students, embedder)
    await routing.refresh()
    routing.start()
    shadow = ShadowRunner(config, upstreams, recorder, metrics, TextSimilarity(embedder),
                          policy_for=routing.policy_for)
    shadow.start()
    worker = start_worker(app.state.config_path, config)
    telemetry = None
    if config.telemetry.otlp_endpoint:  # imported only when asked for
        from gateway.telemetry.exporter import SpanExporter

        telemetry = SpanExporter(config, metrics)
        telemetry.start()
    proxy = Proxy(config, upstreams, recorder, metrics, limiter, routing, shadow, telemetry)
    app.state.slimgate = AppState(
        config=config,
        keys=KeyRing.from_env(config.server.api_keys_env),
        metrics=metrics,
        store=store,
        recorder=recorder,
        session=session,
        upstreams=upstreams,
        proxy=proxy,
        limiter=limiter,
        routing=routing,
        shadow=shadow,
        students=students,
        responses=ResponsesService(proxy, upstreams,
                                   Conversations(store, recorder, config.responses)),
        admin=AdminAuth.from_config(config),
        metrics_keys=KeyRing.from_env(config.server.metrics_keys_env, warn_if_empty=False),
        auth_failures=AuthFailures(config.server.auth_failures_per_minute),
        addresses=ClientAddresses(config.server.trusted_proxies),
    )
    heap = FrozenStartupHeap()
    heap.freeze()  # everything start-up built is frozen (docs/performance.md)
    lag = LoopLagMonitor(metrics)
    lag.start()  # after the freeze's own collection, which no request waits for
    try:
        yield
    finally:
        heap.unfreeze()
        await lag.aclose()
        stop_worker(worker)
        await routing.aclose()
        await shadow.aclose()
        await students.aclose()
        await upstreams.aclose()
        await session.close()
        if telemetry is not None:
            await telemetry.aclose()
        await recorder.close()
        await store.close()
        await limiter.aclose()


def _openapi_with_bodies(app: FastAPI) -> dict[str, Any]:
    """Add the hand-validated request bodies to the generated OpenAPI schema."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for path, model in BODY_MODELS.items():
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[model.__name__] = body
        schema["paths"][path]["post"]["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    app.openapi_schema = schema
    return schema


def create_app(
    config: Config, *, config_path: str | None = None,
    student_factory: StudentFactory | None = None,
    load_student: Callable[[str], Any] | None = None,
) -> FastAPI:
    """The gateway app. With `config_path` and `worker.embedded`, it runs the worker too;
    `student_factory` replaces how student backends are built (tests, custom engines);
    `load_student` loads an embedded student's model from its directory (the CLI passes
    `distill.loading.load_student`; without it only the vLLM engine serves students)."""
    app = FastAPI(title="slimgate", version="0.1.0", lifespan=_lifespan)
    app.state.config = config
    app.state.config_path = config_path
    app.state.student_factory = student_factory
    app.state.load_student = load_student
    install_error_handlers(app)
    app.include_router(openai_routes.router)
    app.include_router(responses_routes.router)
    app.include_router(ops_routes.router)
    app.include_router(admin_routes.router)
    app.include_router(report_routes.router)
    if config.server.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.server.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["authorization", "content-type", "x-request-id", "x-slimgate-task"],
            expose_headers=["x-request-id"],
        )
    app.add_middleware(RequestIdMiddleware)
    app.openapi = lambda: _openapi_with_bodies(app)  # type: ignore[method-assign]
    return app
