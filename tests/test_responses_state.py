"""Stored Responses stay bounded: the cache by bytes, each turn by its own new items, each
conversation by `[responses] max_conversation_bytes` (413); chains resolve on both stores,
through the official `openai` SDK, from rows written before migration 7 too."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from gateway.app_state import AppState
from tests.fake_upstream import FakeUpstream
from tests.helpers import gateway_config, running_client
from tests.pg import store_table


def state(client: httpx.AsyncClient) -> AppState:
    return client.app.state.slimgate  # type: ignore[attr-defined, no-any-return]


@asynccontextmanager
async def sdk_client(tmp_path: Path, upstream: FakeUpstream, key: str, **overrides: Any
                     ) -> AsyncIterator[tuple[openai.AsyncOpenAI, httpx.AsyncClient]]:
    """The gateway in-process and the official SDK talking to it through its transport."""
    async with running_client(gateway_config(tmp_path, upstream, **overrides)) as c:
        yield openai.AsyncOpenAI(base_url="http://gw/v1", api_key=key, http_client=c,
                                 max_retries=0), c


def continues(previous: str | None) -> dict[str, Any]:
    return {"previous_response_id": previous} if previous else {}


async def test_cache_holds_no_more_bytes_than_its_budget(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    budget = 300_000
    async with sdk_client(tmp_path, fresh_upstream, keys,
                          responses={"cache_bytes": budget}) as (sdk, c):
        made = [await sdk.responses.create(model="gpt-test", input=f"{i:03d}" * 20_000)
                for i in range(12)]  # ~120 kB stored each (input and its echo)
        cache = state(c).responses.conversations._cache
        held = sum(len(orjson.dumps(s.context)) + len(orjson.dumps(s.response))
                   for s in cache.values())
        assert 0 < held <= budget and len(cache) <= 2
        # one larger than the whole budget is not cached, yet read at once from the store
        big = await sdk.responses.create(model="gpt-test", input="B" * 200_000)
        assert big.id not in cache
        after = await sdk.responses.create(model="gpt-test", input="next",
                                           previous_response_id=big.id)
        assert after.output_text == "echo: next"
        assert [m["content"][:1] for m in fresh_upstream.requests[-1]["messages"]] == \
            ["B", "e", "n"]  # the big one, its echo, this turn
        for r in made[:3]:  # evicted, still served
            assert (await sdk.responses.retrieve(r.id)).output_text == r.output_text


@pytest.mark.parametrize("cache", ["default", "none"])
async def test_each_turn_stores_only_its_new_items(
    store_target: str, tmp_path: Path, fresh_upstream: FakeUpstream, keys: str, cache: str
) -> None:
    extra = {"responses": {"cache_bytes": 0}} if cache == "none" else {}
    async with sdk_client(tmp_path, fresh_upstream, keys, store=store_table(store_target),
                          **extra) as (sdk, c):
        ids: list[str] = []
        for n in range(12):
            r = await sdk.responses.create(model="gpt-test", input=f"turn{n:02d} " + "x" * 20_000,
                                           **continues(ids[-1] if ids else None))
            ids.append(r.id)
        sent = [m["content"][:6] for m in fresh_upstream.requests[-1]["messages"]
                if m["role"] == "user"]
        assert sent == [f"turn{n:02d}" for n in range(12)]  # the whole chain reached upstream
        items = await sdk.responses.input_items.list(ids[-1], order="asc", limit=100)
        assert [getattr(i, "role", None) for i in items.data] == ["user", "assistant"] * 11 + \
            ["user"]
        await state(c).recorder.flush()
        store = state(c).store
        for n, rid in enumerate(ids):
            row = await store.response_row(rid)
            assert row is not None
            stored = row["context"] + row["response"]
            assert f"turn{n:02d}" in stored and len(stored) < 50_000  # own input + its echo
            assert not any(f"turn{m:02d}" in stored for m in range(n))


async def test_conversation_past_the_limit_gets_413(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    async with sdk_client(tmp_path, fresh_upstream, keys,
                          responses={"max_conversation_bytes": 65_536}) as (sdk, c):
        one = await sdk.responses.create(model="gpt-test", input="a" * 20_000)
        two = await sdk.responses.create(model="gpt-test", input="b" * 14_000,
                                         previous_response_id=one.id)
        for stream in (False, True):
            r = await c.post("/v1/responses", headers={"authorization": f"Bearer {keys}"},
                             json={"model": "gpt-test", "input": "c", "stream": stream,
                                   "previous_response_id": two.id})
            assert r.status_code == 413
            err = r.json()["error"]
            assert err["type"] == "invalid_request_error" and err["code"] == \
                "conversation_too_large" and err["param"] == "previous_response_id"
            assert "65,536 bytes" in err["message"] and \
                "max_conversation_bytes" in err["message"]
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.responses.create(model="gpt-test", input="c", previous_response_id=two.id)
        assert caught.value.status_code == 413
        fresh = await sdk.responses.create(model="gpt-test", input="a new conversation")
        assert fresh.status == "completed"


async def test_links_belong_to_one_key_and_a_deleted_turn_breaks_its_chain(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    async with sdk_client(tmp_path, fresh_upstream, keys) as (sdk, c):
        one = await sdk.responses.create(model="gpt-test", input="one")
        two = await sdk.responses.create(model="gpt-test", input="two",
                                         previous_response_id=one.id)
        other = openai.AsyncOpenAI(base_url="http://gw/v1", api_key="sk-gw-test-2",
                                   http_client=c, max_retries=0)
        with pytest.raises(openai.NotFoundError):
            await other.responses.create(model="gpt-test", input="x",
                                         previous_response_id=two.id)
        with pytest.raises(openai.NotFoundError):
            await other.responses.input_items.list(two.id)
        await sdk.responses.delete(one.id)
        with pytest.raises(openai.NotFoundError) as caught:
            await sdk.responses.create(model="gpt-test", input="three",
                                       previous_response_id=two.id)
        assert one.id in caught.value.message and "deleted" in caught.value.message
        assert (await sdk.responses.retrieve(two.id)).output_text == "echo: two"


async def test_rows_from_before_the_migration_still_continue(
    store_target: str, tmp_path: Path, fresh_upstream: FakeUpstream, keys: str,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.store import migrations, pg_schema
    from gateway.store.db import connect

    # A store at schema 6, holding a response the old way: its whole conversation.
    with monkeypatch.context() as m:
        m.setattr(migrations, "SCHEMA_VERSION", 6)
        m.setattr(pg_schema, "SCHEMA_VERSION", 6)
        con = connect(store_target)
    old_items = [{"id": f"msg_{i}", "type": "message", "role": role, "status": "completed",
                  "content": [{"type": kind, "text": text}]}
                 for i, (role, kind, text) in enumerate([("user", "input_text", "old one"),
                                                         ("assistant", "output_text", "old two"),
                                                         ("user", "input_text", "old three")])]
    response = {"id": "resp_old", "object": "response", "output": [
        {"id": "msg_3", "type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "old four", "annotations": []}]}]}
    key_id = hashlib.sha256(keys.encode()).hexdigest()[:12]
    con.execute("INSERT INTO responses (id, key_id, created_at, model, request_id, previous_id, "
                "context, response) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                ("resp_old", key_id, 1.0, "gpt-test", "r0", "resp_older",
                 orjson.dumps(old_items).decode(), orjson.dumps(response).decode()))
    con.close()
    async with sdk_client(tmp_path, fresh_upstream, keys, store=store_table(store_target)) \
            as (sdk, _):
        new = await sdk.responses.create(model="gpt-test", input="new five",
                                         previous_response_id="resp_old")
        assert [m["content"] for m in fresh_upstream.requests[-1]["messages"]] == [
            "old one", "old two", "old three", "old four", "new five"]
        items = await sdk.responses.input_items.list(new.id, order="asc")
        assert [i.id for i in items.data][:4] == ["msg_0", "msg_1", "msg_2", "msg_3"]


async def test_an_unknown_id_is_a_404_without_waiting_for_the_recorder() -> None:
    from gateway.errors import NotFound
    from gateway.responses.conversations import Conversations

    class Store:
        async def response_row(self, response_id: str) -> None:
            return None

    class Recorder:
        flushes = 0

        async def flush(self) -> None:
            Recorder.flushes += 1

    state = Conversations(Store(), Recorder())  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        await state.get("resp_never_made_here", "k1")
    assert Recorder.flushes == 0  # a client's guess never makes the writer's queue a wait
