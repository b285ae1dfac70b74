"""A stored Responses API response: the row behind `previous_response_id` and the
`/v1/responses/{id}` endpoints (table `responses`, written by the recorder)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(slots=True)
class StoredResponse:
    id: str
    key_id: str | None
    created_at: float
    model: str
    request_id: str
    previous_id: str | None
    context: list[dict[str, Any]]  # every input item, earlier turns first
    response: dict[str, Any]  # the Response object as the client got it

    def row(self) -> tuple[Any, ...]:
        return (self.id, self.key_id, self.created_at, self.model, self.request_id,
                self.previous_id, orjson.dumps(self.context).decode(),
                orjson.dumps(self.response).decode())

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> StoredResponse:
        return cls(id=row["id"], key_id=row["key_id"], created_at=row["created_at"],
                   model=row["model"], request_id=row["request_id"],
                   previous_id=row["previous_id"], context=orjson.loads(row["context"]),
                   response=orjson.loads(row["response"]))

    def history(self) -> list[dict[str, Any]]:
        """What a response continuing this one starts from."""
        return [*self.context, *(self.response.get("output") or ())]
