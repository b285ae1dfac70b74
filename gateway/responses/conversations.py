"""Conversation state of the Responses API, kept in slimgate's store for any upstream.

A response created with `store` (OpenAI's default) is saved as its own turn: the input items
new in its request and its output, linked to the turn before by `previous_response_id`. A
continuation rebuilds the conversation by walking that chain back (every link checked to
belong to the caller's key, each id visited once, the bytes bounded), and a conversation
past `[responses] max_conversation_bytes` is refused with 413. Saving never waits for the
disk: the row goes through the recorder's queue, and the newest turns stay in an in-process
cache bounded by `[responses] cache_bytes`. Any key but the creator's gets 404.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import orjson

from gateway.config import ResponsesConfig
from gateway.errors import NotFound, PayloadTooLarge
from gateway.store.base import Store
from gateway.store.recorder import Recorder
from gateway.store.stored_response import StoredResponse

_SAVED_IDS = 65_536  # ids remembered as saved here: far more than a queue ever holds

class _Missing(Exception):
    """A response of the walk is not stored for this key (deleted, expired, another key's)."""

    def __init__(self, response_id: str) -> None:
        super().__init__(response_id)
        self.response_id = response_id


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.",
                    param="response_id", code="response_not_found")


def _broken(asked: str, missing: str, *, param: str, code: str, label: str) -> NotFound:
    if missing == asked:
        return NotFound(f"{label} with id '{asked}' not found.", param=param, code=code)
    return NotFound(f"{label} with id '{asked}' continues response '{missing}', which is not "
                    "found (deleted or expired), so its conversation cannot be rebuilt.",
                    param=param, code=code)


def _items(turns: list[StoredResponse], *, last_output: bool) -> list[dict[str, Any]]:
    """The conversation's items, oldest first: each turn's input, then its output."""
    items: list[dict[str, Any]] = []
    for i, turn in enumerate(turns):
        items += turn.context
        if last_output or i < len(turns) - 1:
            items += turn.output
    return items


class Conversations:
    def __init__(self, store: Store, recorder: Recorder,
                 config: ResponsesConfig | None = None) -> None:
        config = config or ResponsesConfig()
        self._store = store
        self._recorder = recorder
        self._cache: OrderedDict[str, StoredResponse] = OrderedDict()  # least recent first
        self._cache_budget = config.cache_bytes
        self.cached_bytes = 0  # JSON bytes of the responses in the cache, at most the budget
        self.max_conversation_bytes = config.max_conversation_bytes
        # Ids this process saved, newest last: only a miss on one of these can be a row still
        # in the recorder's queue, worth a flush. A client's unknown id is a 404 at once.
        self._saved: OrderedDict[str, None] = OrderedDict()

    # --- the cache: least recently used out first, by bytes --------------------------------

    def save(self, stored: StoredResponse) -> None:
        self._uncache(stored.id)
        if stored.nbytes <= self._cache_budget:  # a larger one is read from the store
            self._cache[stored.id] = stored
            self.cached_bytes += stored.nbytes
            while self.cached_bytes > self._cache_budget:
                _, old = self._cache.popitem(last=False)
                self.cached_bytes -= old.nbytes
        self._saved[stored.id] = None
        if len(self._saved) > _SAVED_IDS:
            self._saved.popitem(last=False)
        self._recorder.record(stored)

    async def _flush_if_saved(self, response_id: str) -> bool:
        """Let the recorder write what it holds when `response_id` was saved here (it may
        still be queued); False, without waiting, for an id this process never saved."""
        if response_id not in self._saved:
            return False
        await self._recorder.flush()
        self._saved.pop(response_id, None)
        return True

    def _uncache(self, response_id: str) -> None:
        old = self._cache.pop(response_id, None)
        if old is not None:
            self.cached_bytes -= old.nbytes

    def _cached(self, response_id: str) -> StoredResponse | None:
        stored = self._cache.get(response_id)
        if stored is not None:
            self._cache.move_to_end(response_id)
        return stored

    # --- reads ------------------------------------------------------------------------------

    async def get(self, response_id: str, key_id: str | None) -> StoredResponse:
        stored = self._cached(response_id)
        if stored is None:
            row = await self._store.response_row(response_id)
            if row is None and await self._flush_if_saved(response_id):  # still queued?
                row = await self._store.response_row(response_id)
            stored = StoredResponse.from_row(row) if row is not None else None
        if stored is None or stored.key_id != key_id:
            raise _not_found(response_id)
        return stored

    async def _chain_rows(self, response_id: str) -> dict[str, StoredResponse]:
        rows = await self._store.response_chain(response_id)
        if not rows and await self._flush_if_saved(response_id):
            rows = await self._store.response_chain(response_id)
        return {r["id"]: StoredResponse.from_row(r) for r in rows}

    async def _turns(self, last: StoredResponse, key_id: str | None) -> list[StoredResponse]:
        """`last` and the turns it continues, oldest first. Every turn must be `key_id`'s;
        the walk visits an id once and stops past `max_conversation_bytes` (413)."""
        turns, seen, total = [last], {last.id}, last.nbytes
        fetched: dict[str, StoredResponse] = {}
        while turns[-1].chained and turns[-1].previous_id is not None:
            rid = turns[-1].previous_id
            if rid in seen:  # a cycle: only a store edited by hand has one
                raise _Missing(rid)
            seen.add(rid)
            stored = self._cached(rid) or fetched.get(rid)
            if stored is None:  # one query brings the rest of the chain
                fetched = await self._chain_rows(rid)
                stored = fetched.get(rid)
            if stored is None or stored.key_id != key_id:
                raise _Missing(rid)
            total += stored.nbytes
            if total > self.max_conversation_bytes:
                raise self._too_large(total)
            turns.append(stored)
        turns.reverse()
        return turns

    def _too_large(self, size: int) -> PayloadTooLarge:
        limit = self.max_conversation_bytes
        return PayloadTooLarge(
            f"This conversation would hold {size:,} bytes, over this gateway's limit of "
            f"{limit:,} bytes for a stored conversation (setting "
            "[responses] max_conversation_bytes). Start a new conversation without "
            "previous_response_id, or ask the operator to raise the limit.",
            param="previous_response_id", code="conversation_too_large")

    async def continued(self, previous_id: str | None, key_id: str | None,
                        items: list[dict[str, Any]]
                        ) -> tuple[StoredResponse | None, list[dict[str, Any]]]:
        """The response a request continues and the conversation so far (its items, oldest
        first); 404 if a turn is missing, 413 if it and `items` are past the limit."""
        if not previous_id:
            return None, []
        label = dict(param="previous_response_id", code="previous_response_not_found",
                     label="Previous response")
        try:
            previous = await self.get(previous_id, key_id)
        except NotFound:
            raise _broken(previous_id, previous_id, **label) from None
        size = previous.conversation_bytes + len(orjson.dumps(items))
        if size > self.max_conversation_bytes:  # refused before reading the earlier turns
            raise self._too_large(size)
        try:
            turns = await self._turns(previous, key_id)
        except _Missing as m:
            raise _broken(previous_id, m.response_id, **label) from None
        return previous, _items(turns, last_output=True)

    async def input_items(self, stored: StoredResponse, key_id: str | None
                          ) -> list[dict[str, Any]]:
        """Every input item of a stored response's request, earlier turns first."""
        try:
            turns = await self._turns(stored, key_id)
        except _Missing as m:
            raise _broken(stored.id, m.response_id, param="response_id",
                          code="response_not_found", label="Response") from None
        return _items(turns, last_output=False)

    async def delete(self, response_id: str, key_id: str | None) -> None:
        await self.get(response_id, key_id)
        await self._recorder.flush()  # a save still queued must not bring it back
        self._uncache(response_id)
        await self._store.delete_response(response_id)


def input_items_page(context: list[dict[str, Any]], *, after: str | None, limit: int,
                     order: str) -> dict[str, Any]:
    """One page of `GET /v1/responses/{id}/input_items` (OpenAI's cursor list)."""
    items = context if order == "asc" else context[::-1]
    if after is not None:
        ids = [i.get("id") for i in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    page = items[:limit]
    return {"object": "list", "data": page,
            "first_id": page[0].get("id") if page else None,
            "last_id": page[-1].get("id") if page else None,
            "has_more": len(items) > limit}
