"""`/v1/responses` routes: thin handlers that parse, call `ResponsesService`, and answer."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from gateway.app_state import get_state
from gateway.body import parse_request_body, read_body
from gateway.errors import InvalidRequest
from gateway.protocol.responses import InputItemsQuery, ResponsesRequest
from gateway.replies import answer_json, answer_stream, json_response
from gateway.responses.conversations import input_items_page

router = APIRouter()


@router.post("/v1/responses", tags=["openai"])
async def create_response(request: Request) -> Response:
    state = get_state(request)
    ctx = await state.begin(request)
    body = parse_request_body(await read_body(request, state.config.server.max_body_bytes),
                      ResponsesRequest)
    if body.get("stream"):
        return answer_stream(await state.responses.stream(body, ctx), ctx)
    return answer_json(await state.responses.create(body, ctx), ctx)


@router.get("/v1/responses/{response_id}", tags=["openai"])
async def get_response(response_id: str, request: Request) -> Response:
    state = get_state(request)
    ctx = await state.begin(request)
    stored = await state.responses.conversations.get(response_id, ctx.key_id)
    return json_response(stored.response)


@router.delete("/v1/responses/{response_id}", tags=["openai"])
async def delete_response(response_id: str, request: Request) -> Response:
    state = get_state(request)
    ctx = await state.begin(request)
    await state.responses.conversations.delete(response_id, ctx.key_id)
    return json_response({"id": response_id, "object": "response.deleted", "deleted": True})


@router.get("/v1/responses/{response_id}/input_items", tags=["openai"])
async def list_input_items(response_id: str, request: Request) -> Response:
    state = get_state(request)
    ctx = await state.begin(request)
    params = {k: v for k, v in request.query_params.items() if k != "include"}
    try:
        query = InputItemsQuery.model_validate(params)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidRequest(f"Invalid value for '{param}': {first['msg']}.", param=param) \
            from None
    stored = await state.responses.conversations.get(response_id, ctx.key_id)
    context = await state.responses.conversations.input_items(stored, ctx.key_id)
    return json_response(input_items_page(context, after=query.after, limit=query.limit,
                                          order=query.order))
