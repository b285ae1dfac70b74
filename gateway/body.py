"""Reading a request body: size limit, JSON parsing and validation into OpenAI errors."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError

from gateway.errors import InvalidRequest, PayloadTooLarge
from gateway.upstream.base import MAX_JSON_DEPTH, too_deep


async def read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidRequest("Invalid Content-Length header.") from None
        if size > max_bytes:
            raise PayloadTooLarge(f"Request body of {size} bytes exceeds the limit of {max_bytes}.")
        return await request.body()
    chunks = []
    total = 0
    async for chunk in request.stream():  # chunked upload: count as it arrives
        total += len(chunk)
        if total > max_bytes:
            raise PayloadTooLarge(f"Request body exceeds the limit of {max_bytes} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


_TYPE_TAGS = {"str", "int", "float", "bool", "none", "list", "dict"}


def _param(loc: tuple[Any, ...]) -> str | None:
    """`messages.1.user.content` -> `messages[1].content` (union tags dropped)."""
    out = ""
    parts = list(loc)
    for i, part in enumerate(parts):
        prev = parts[i - 1] if i else None
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        # pydantic names the chosen member of a tagged union (a message role, a format
        # type) or of a plain union (`str`, `list[str]`) in the location: not a field.
        tagged = prev == "response_format" or (isinstance(prev, int) and "messages" in out)
        # `item:message`-style tags come from gateway.protocol.responses' discriminators.
        if tagged or "[" in part or ":" in part or part.split("-")[0] in _TYPE_TAGS \
                or part.startswith("function-"):
            continue
        out += f".{part}" if out else part
    return out or None


def parse_request_body(raw: bytes, model: type[BaseModel]) -> dict[str, Any]:
    """Parse and validate; return the client's own dict (unknown fields kept as sent)."""
    if not raw:
        raise InvalidRequest("The request body is empty; expected a JSON object.")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"The request body is not valid JSON: {e}.") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if too_deep(data):
        raise InvalidRequest(f"The request body nests deeper than {MAX_JSON_DEPTH} levels.")
    try:
        model.model_validate(data)
    except ValidationError as e:
        # The deepest error names the field at fault (for `str | list[item]`, the item's).
        first = max(e.errors(include_url=False), key=lambda err: len(err["loc"]))
        param = _param(tuple(first["loc"]))
        where = f"'{param}'" if param else "the request body"
        raise InvalidRequest(f"Invalid value for {where}: {first['msg']}.", param=param) from None
    return data
