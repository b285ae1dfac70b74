"""OpenAI-compatible routes: thin handlers that parse, call `Proxy`, and answer.

Request bodies are read and validated by hand (orjson + pydantic) rather than through
FastAPI's body parameters, so the client's JSON is forwarded exactly as sent; the
OpenAPI schema still documents them (see `app.openapi_with_bodies`).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from gateway.body import parse_request_body, read_body
from gateway.errors import ModelNotFound, UpstreamError
from gateway.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ModelCard,
    ModelList,
)
from gateway.protocol.responses import ResponsesRequest
from gateway.serving import RequestContext
from gateway.state import get_state
from gateway.upstream.base import Endpoint

router = APIRouter()

BODY_MODELS: dict[str, type[Any]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/completions": CompletionRequest,
    "/v1/embeddings": EmbeddingRequest,
    "/v1/responses": ResponsesRequest,  # served by gateway.responses.routes
}

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def json_response(data: Any, status: int = 200) -> Response:
    try:
        raw = orjson.dumps(data)
    except orjson.JSONEncodeError:  # e.g. an upstream answer nested beyond orjson's limit
        raise UpstreamError("The upstream's answer could not be encoded as JSON.",
                            code="malformed") from None
    return Response(raw, status_code=status, media_type="application/json")


async def _serve(request: Request, endpoint: Endpoint, model: type[Any]) -> Response:
    state = get_state(request)
    ctx = await state.begin(request)
    body = parse_request_body(await read_body(request, state.config.server.max_body_bytes), model)
    if body.get("stream"):
        chunks = await state.proxy.stream(endpoint, body, ctx)
        headers = {**SSE_HEADERS, **who_answered(ctx)}
        return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)
    data = await state.proxy.complete(endpoint, body, ctx)
    response = json_response(data)
    response.headers.update(who_answered(ctx))
    return response


def who_answered(ctx: RequestContext) -> dict[str, str]:
    """Tell agent developers who answered: teacher or student, and for which task."""
    out = {"x-slimgate-backend": ctx.backend}
    if ctx.task:
        out["x-slimgate-task"] = ctx.task
    return out


@router.post("/v1/chat/completions", tags=["openai"])
async def chat_completions(request: Request) -> Response:
    return await _serve(request, "chat/completions", ChatCompletionRequest)


@router.post("/v1/completions", tags=["openai"])
async def completions(request: Request) -> Response:
    return await _serve(request, "completions", CompletionRequest)


@router.post("/v1/embeddings", tags=["openai"])
async def embeddings(request: Request) -> Response:
    return await _serve(request, "embeddings", EmbeddingRequest)


def _cards(request: Request) -> list[ModelCard]:
    state = get_state(request)
    created = int(state.metrics.started_at)
    return [ModelCard(id=m.name, created=created, owned_by="slimgate") for m in state.config.models]


@router.get("/v1/models", tags=["openai"], response_model=ModelList)
async def list_models(request: Request) -> Response:
    await get_state(request).begin(request)
    return json_response(ModelList(data=_cards(request)).model_dump())


@router.get("/v1/models/{model_id:path}", tags=["openai"], response_model=ModelCard)
async def get_model(model_id: str, request: Request) -> Response:
    await get_state(request).begin(request)
    for card in _cards(request):
        if card.id == model_id:
            return json_response(card.model_dump())
    raise ModelNotFound(f"The model '{model_id}' does not exist.", param="model")
