"""How an API answer leaves the gateway: JSON, or an SSE stream, with who answered it.

Both API routers (`gateway.openai.routes`, `gateway.responses.routes`) answer through
these; the request's side (size limit, parsing, validation) is `gateway.body`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from fastapi.responses import Response, StreamingResponse

from gateway.errors import UpstreamError

if TYPE_CHECKING:
    from gateway.proxy import RequestContext

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def json_response(data: Any, status: int = 200) -> Response:
    try:
        raw = orjson.dumps(data)
    except orjson.JSONEncodeError:  # e.g. an upstream answer nested beyond orjson's limit
        raise UpstreamError("The upstream's answer could not be encoded as JSON.",
                            code="malformed") from None
    return Response(raw, status_code=status, media_type="application/json")


def who_answered(ctx: RequestContext) -> dict[str, str]:
    """Tell agent developers who answered: teacher or student, and for which task."""
    out = {"x-slimgate-backend": ctx.backend}
    if ctx.task:
        out["x-slimgate-task"] = ctx.task
    return out


def answer_json(data: Any, ctx: RequestContext) -> Response:
    """A served answer as JSON, with who answered it."""
    response = json_response(data)
    response.headers.update(who_answered(ctx))
    return response


def answer_stream(events: AsyncIterator[bytes], ctx: RequestContext) -> StreamingResponse:
    """A served answer as server-sent events, with who answered it (known before the first
    event: the stream is opened, or a student's answer checked, before this is called)."""
    headers = {**SSE_HEADERS, **who_answered(ctx)}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)
