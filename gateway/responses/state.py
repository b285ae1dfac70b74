"""Conversation state of the Responses API, kept in slimgate's store for any upstream.

A response created with `store` (OpenAI's default) is saved with its whole context: every
input item of the conversation so far, earlier turns first. `previous_response_id` then
continues from that context plus the stored response's output, whatever model answered.
Saving never waits for the disk: the row goes through the recorder's queue, and the
newest responses stay in a small in-process cache so the next turn finds them at once.
A response belongs to the gateway key that created it; any other key gets 404.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from gateway.errors import NotFound
from gateway.store.base import Store
from gateway.store.recorder import Recorder
from gateway.store.responses import StoredResponse

# Responses kept in memory: enough to cover the recorder's write lag many times over.
CACHE_SIZE = 2048


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.",
                    param="response_id", code="response_not_found")


class ResponseState:
    def __init__(self, store: Store, recorder: Recorder, cache_size: int = CACHE_SIZE) -> None:
        self._store = store
        self._recorder = recorder
        self._cache: OrderedDict[str, StoredResponse] = OrderedDict()
        self._cache_size = cache_size

    def save(self, stored: StoredResponse) -> None:
        self._cache[stored.id] = stored
        self._cache.move_to_end(stored.id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        self._recorder.record(stored)

    async def get(self, response_id: str, key_id: str | None) -> StoredResponse:
        stored = self._cache.get(response_id)
        if stored is None:
            row = await self._store.response_row(response_id)
            stored = StoredResponse.from_row(row) if row is not None else None
        if stored is None or stored.key_id != key_id:
            raise _not_found(response_id)
        return stored

    async def history(self, previous_id: str | None, key_id: str | None) -> list[dict[str, Any]]:
        if not previous_id:
            return []
        try:
            return (await self.get(previous_id, key_id)).history()
        except NotFound:
            raise NotFound(f"Previous response with id '{previous_id}' not found.",
                           param="previous_response_id", code="previous_response_not_found"
                           ) from None

    async def delete(self, response_id: str, key_id: str | None) -> None:
        await self.get(response_id, key_id)
        await self._recorder.flush()  # a save still queued must not bring it back
        self._cache.pop(response_id, None)
        await self._store.delete_response(response_id)


def input_items_page(stored: StoredResponse, *, after: str | None, limit: int,
                     order: str) -> dict[str, Any]:
    """One page of `GET /v1/responses/{id}/input_items` (OpenAI's cursor list)."""
    items = stored.context if order == "asc" else stored.context[::-1]
    if after is not None:
        ids = [i.get("id") for i in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    page = items[:limit]
    return {"object": "list", "data": page,
            "first_id": page[0].get("id") if page else None,
            "last_id": page[-1].get("id") if page else None,
            "has_more": len(items) > limit}
