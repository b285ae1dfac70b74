"""A stored Responses API response: the row behind `previous_response_id` and the
`/v1/responses/{id}` endpoints (table `responses`, written by the recorder).

A row holds its own turn only — the input items new in that request and the Response
object — and `previous_id` links it to the turn before (`chained`). Rows written before
migration 7 hold every input item of their conversation instead (`chained` false), so a
walk back along `previous_id` stops at them.
"""

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
    context: list[dict[str, Any]]  # chained: this turn's new input items; else every one
    response: dict[str, Any]  # the Response object as the client got it
    chained: bool = True  # earlier turns are read through previous_id
    conversation_bytes: int = 0  # JSON bytes of every turn up to this one (its own included)
    nbytes: int = 0  # JSON bytes of this row's context and response (what the cache counts)

    @classmethod
    def turn(cls, *, previous: StoredResponse | None, **fields: Any) -> StoredResponse:
        """A new chained turn, measured: its own bytes, and the conversation's so far."""
        stored = cls(**fields, chained=True)
        stored.nbytes = len(orjson.dumps(stored.context)) + len(orjson.dumps(stored.response))
        stored.conversation_bytes = stored.nbytes + (previous.conversation_bytes
                                                     if previous is not None else 0)
        return stored

    def row(self) -> tuple[Any, ...]:
        return (self.id, self.key_id, self.created_at, self.model, self.request_id,
                self.previous_id, orjson.dumps(self.context).decode(),
                orjson.dumps(self.response).decode(), int(self.chained),
                self.conversation_bytes)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> StoredResponse:
        nbytes = len(row["context"]) + len(row["response"])
        return cls(id=row["id"], key_id=row["key_id"], created_at=row["created_at"],
                   model=row["model"], request_id=row["request_id"],
                   previous_id=row["previous_id"], context=orjson.loads(row["context"]),
                   response=orjson.loads(row["response"]), chained=bool(row["chained"]),
                   # a row from before migration 7 holds its whole conversation
                   conversation_bytes=row["conversation_bytes"] or nbytes, nbytes=nbytes)

    @property
    def output(self) -> list[dict[str, Any]]:
        return list(self.response.get("output") or ())
