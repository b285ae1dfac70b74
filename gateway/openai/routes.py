"""`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`: thin handlers
that parse, call `Proxy`, and answer.

Request bodies are read and validated by hand (orjson + pydantic) rather than through
FastAPI's body parameters, so the client's JSON is forwarded exactly as sent; the
OpenAPI schema still documents them (`gateway.app.BODY_MODELS`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.app_state import get_state
from gateway.body import parse_request_body, read_body
from gateway.errors import ModelNotFound
from gateway.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ModelCard,
    ModelList,
)
from gateway.replies import answer_json, answer_stream, json_response
from gateway.upstream.base import Endpoint

router = APIRouter()


async def _serve(request: Request, endpoint: Endpoint, model: type[Any]) -> Response:
    state = get_state(request)
    ctx = await state.begin(request)
    body = parse_request_body(await read_body(request, state.config.server.max_body_bytes), model)
    if body.get("stream"):
        return answer_stream(await state.proxy.stream(endpoint, body, ctx), ctx)
    return answer_json(await state.proxy.complete(endpoint, body, ctx), ctx)


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
