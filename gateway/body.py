"""Reading a request body: size limit, JSON parsing and validation into OpenAI errors."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError

from gateway.errors import InvalidRequest, PayloadTooLarge


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


def _param(loc: tuple[Any, ...]) -> str | None:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str):
            # pydantic puts union member tags in the path ("user", "function-after"...)
            if part in {"system", "developer", "user", "assistant", "tool", "function", "text",
                        "json_object", "json_schema", "str", "list[str]", "list[int]",
                        "list[list[int]]", "list[dict[str,any]]"}:
                continue
            out += f".{part}" if out else part
    return out or None


def parse_json(raw: bytes, model: type[BaseModel]) -> dict[str, Any]:
    """Parse and validate; return the client's own dict (unknown fields kept as sent)."""
    if not raw:
        raise InvalidRequest("The request body is empty; expected a JSON object.")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"The request body is not valid JSON: {e}.") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        model.model_validate(data)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        param = _param(tuple(first["loc"]))
        where = f"'{param}'" if param else "the request body"
        raise InvalidRequest(f"Invalid value for {where}: {first['msg']}.", param=param) from None
    return data
