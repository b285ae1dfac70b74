"""The work behind `/v1/responses`: the loop's decision, a student or the teacher, state.

A Responses request is seen by the loop in its chat-completions form (`translate.to_chat`):
the chat path's loop (`ChatLoop`, which `gateway.proxy.Proxy` is) assigns it to a task,
routes it, tries a student with the same contract check and fallback as chat, records it
(with `api = "responses"`) and shadows it, so one task can mix both APIs. The teacher gets
the request natively (`/v1/responses`) or translated to chat completions, per model
(`ModelConfig.responses_mode`), and fallbacks may mix both.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.config import ModelConfig
from gateway.errors import GatewayError
from gateway.proxy import CLIENT_CLOSED, RequestContext, student_body, upstream_body
from gateway.responses.conversations import Conversations
from gateway.responses.stream import ChatToEvents, sse
from gateway.responses.translate import (
    ChatView,
    chat_to_response,
    envelope,
    for_native,
    new_id,
    normalize_input,
    response_to_chat,
    to_chat,
)
from gateway.routing import Decision
from gateway.store.recorder import Exchange
from gateway.store.stored_response import StoredResponse
from gateway.streams import assemble_chat, chunks_from_response
from gateway.upstream.base import Backend, Endpoint, UpstreamFailure
from gateway.upstream.pool import Served, Upstreams

_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ChatLoop(Protocol):
    """What the Responses service asks of the chat path's loop (`gateway.proxy.Proxy`), for
    a turn in its chat form: the same model lookup, task decision, student with its contract
    check, record and shadow job as a chat request. The teacher it calls itself."""

    def resolve(self, name: str) -> ModelConfig: ...

    async def admit(self, endpoint: Endpoint, body: dict[str, Any], ctx: RequestContext, *,
                    stream: bool) -> tuple[Decision | None, Exchange]: ...

    async def try_student(self, decision: Decision, body: dict[str, Any], ex: Exchange,
                          ctx: RequestContext) -> dict[str, Any] | None: ...

    async def finish(self, ex: Exchange, ctx: RequestContext, status: int) -> None: ...

    async def failed(self, f: UpstreamFailure, ex: Exchange, ctx: RequestContext,
                     model_name: str) -> GatewayError: ...

    def shadow_job(self, decision: Decision | None, body: dict[str, Any],
                   resp: dict[str, Any], ctx: RequestContext) -> None: ...


@dataclass(slots=True)
class Turn:
    """One Responses request, prepared: its items, its chat view, the loop's record."""

    body: dict[str, Any]
    model: ModelConfig  # the model asked for (its fallbacks may answer)
    previous: StoredResponse | None  # the response `previous_response_id` continues
    history: list[dict[str, Any]]  # the conversation before this turn, oldest first
    items: list[dict[str, Any]]  # this turn's input, normalized with ids
    chat: ChatView
    decision: Decision | None
    ex: Exchange
    envelope: dict[str, Any]

    def served_by(self, served: Served) -> None:
        """Note in the record which model of the chain answered."""
        self.ex.upstream, self.ex.upstream_model = served.model.name, served.model.upstream_model

    def native_body(self, stream: bool) -> dict[str, Any]:
        body = upstream_body("responses", self.body)
        if self.history:  # the gateway holds the state: the upstream gets it all
            body = {k: v for k, v in body.items() if k != "previous_response_id"}
            body["input"] = [*for_native(self.history), *for_native(self.items)]
        return {**body, "stream": True} if stream else \
            {k: v for k, v in body.items() if k != "stream"}

    def own(self, resp: dict[str, Any]) -> dict[str, Any]:
        """A native answer under the gateway's response id (the gateway holds the state, and
        its ids never collide across upstreams or keys) and the client's previous id."""
        resp["id"] = self.envelope["id"]
        resp["previous_response_id"] = self.body.get("previous_response_id")
        return resp


class ResponsesService:
    def __init__(self, loop: ChatLoop, upstreams: Upstreams,
                 conversations: Conversations) -> None:
        self._loop = loop
        self._upstreams = upstreams
        self.conversations = conversations

    async def _prepare(self, body: dict[str, Any], ctx: RequestContext, stream: bool) -> Turn:
        model = self._loop.resolve(body["model"])
        items = normalize_input(body.get("input"))
        previous, history = await self.conversations.continued(
            body.get("previous_response_id"), ctx.key_id, items)
        chat = to_chat(body, [*history, *items])
        # Reserved by chat.body, which carries max_output_tokens as max_tokens.
        decision, ex = await self._loop.admit("chat/completions", chat.body, ctx, stream=stream)
        if chat.untranslatable:  # hosted tools and the like: only the teacher can answer
            decision = None
        ex.api = "responses"
        return Turn(body, model, previous, history, items, chat, decision, ex,
                    envelope(body, new_id("resp"), ctx.created_at, body["model"]))

    async def _served(self, turn: Turn, ctx: RequestContext, resp: dict[str, Any],
                      chat: dict[str, Any]) -> None:
        """After the answer: record, shadow, keep the state."""
        await self._loop.finish(turn.ex, ctx, 200)
        if ctx.backend == "teacher":
            self._loop.shadow_job(turn.decision, turn.chat.body, chat, ctx)
        if turn.body.get("store", True) and resp.get("id"):
            self.conversations.save(StoredResponse.turn(  # its own turn only: the rest is linked
                previous=turn.previous, id=resp["id"], key_id=ctx.key_id,
                created_at=ctx.created_at, model=turn.body["model"],
                request_id=ctx.request_id, previous_id=turn.body.get("previous_response_id"),
                context=turn.items, response=resp))

    async def _failed(self, turn: Turn, ctx: RequestContext,
                      e: UpstreamFailure | GatewayError) -> GatewayError:
        """The client's error for a turn no upstream answered, recorded with its exchange: an
        upstream failure (after retries and fallbacks), or a request that no upstream of the
        chain can take as it is (one translation cannot carry)."""
        if isinstance(e, UpstreamFailure):
            return await self._loop.failed(e, turn.ex, ctx, turn.model.name)
        turn.ex.error = e.message
        await self._loop.finish(turn.ex, ctx, e.status)
        return e

    # --- non-streaming ---------------------------------------------------------------------

    async def create(self, body: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        turn = await self._prepare(body, ctx, stream=False)
        if turn.decision is not None and turn.decision.route.serve == "student":
            answer = await self._loop.try_student(turn.decision, turn.chat.body, turn.ex, ctx)
            if answer is not None:
                resp = chat_to_response(answer, turn.envelope)
                await self._served(turn, ctx, resp, answer)
                return resp

        async def attempt(m: ModelConfig, backend: Backend) -> tuple[dict[str, Any],
                                                                       dict[str, Any]]:
            if m.responses_mode == "native":
                native = turn.own(await backend.complete("responses",
                                                          turn.native_body(stream=False)))
                return native, response_to_chat(native)
            turn.chat.require_translatable()
            chat = await backend.complete(
                "chat/completions", upstream_body("chat/completions", turn.chat.body))
            return chat_to_response(chat, turn.envelope), chat

        try:
            (resp, chat), served = await self._upstreams.call(turn.model, attempt)
        except (UpstreamFailure, GatewayError) as e:
            raise await self._failed(turn, ctx, e) from None
        turn.served_by(served)
        turn.ex.response = chat
        await self._served(turn, ctx, resp, chat)
        return resp

    # --- streaming ---------------------------------------------------------------------------

    async def stream(self, body: dict[str, Any], ctx: RequestContext) -> AsyncIterator[bytes]:
        """Open the stream (errors before the first event raise) and return its events."""
        turn = await self._prepare(body, ctx, stream=True)
        if turn.decision is not None and turn.decision.route.serve == "student":
            # Checked whole against the contract before the first byte, then streamed.
            answer = await self._loop.try_student(turn.decision, turn.chat.body, turn.ex, ctx)
            if answer is not None:
                turn.ex.ttft_ms = (time.perf_counter() - ctx.started) * 1000
                return self._relay(turn, ctx, _aiter(chunks_from_response(answer)), "chat")
        chat_send = {**student_body(turn.chat.body), "stream": True,
                     "stream_options": {"include_usage": True}}

        def opener(m: ModelConfig, backend: Backend) -> AsyncIterator[dict[str, Any]]:
            if m.responses_mode == "native":
                return backend.stream("responses", turn.native_body(stream=True))
            turn.chat.require_translatable()
            return backend.stream("chat/completions", chat_send)

        try:
            source, served = await self._upstreams.open_stream_with(turn.model, opener)
        except (UpstreamFailure, GatewayError) as e:
            raise await self._failed(turn, ctx, e) from None
        turn.served_by(served)
        turn.ex.ttft_ms = (time.perf_counter() - ctx.started) * 1000
        form = "native" if served.model.responses_mode == "native" else "chat"
        return self._relay(turn, ctx, source, form)

    async def _relay(self, turn: Turn, ctx: RequestContext,
                     source: AsyncIterator[dict[str, Any]], form: str) -> AsyncIterator[bytes]:
        """Relay a native event stream, or translate chat chunks into events; the final
        event leaves only once the answer is recorded and its state saved, so the client's
        next turn always finds it."""
        events = ChatToEvents(turn.envelope)
        chunks: list[dict[str, Any]] = []
        tail: list[dict[str, Any]] = []
        status = 499  # the client went away, unless the stream gets to its end
        if form == "chat" and ctx.backend != "student":
            turn.ex.chunks = chunks  # what was streamed counts if the client goes away
        try:
            if form == "chat":
                for ev in events.start():
                    yield sse(ev)
            async for item in source:
                if form == "native":
                    if isinstance(item.get("response"), dict):
                        turn.own(item["response"])
                    if item.get("type") in _FINAL:
                        tail.append(item)
                    else:
                        yield sse(item)
                    continue
                chunks.append(item)
                for ev in events.feed(item):
                    yield sse(ev)
            if form == "native":
                final = tail[-1]["response"] if tail else {}
                chat = turn.ex.response = response_to_chat(final)
            else:
                tail = events.finish()
                final = events.response
                if ctx.backend == "student":  # try_student recorded its answer
                    chat = turn.ex.response or {}
                else:
                    turn.ex.chunks = chunks
                    chat = assemble_chat(chunks)
            status = 200
            await self._served(turn, ctx, final, chat)
            for ev in tail:
                yield sse(ev)
        except UpstreamFailure as f:
            status = 0  # recorded by _failed(); the stream ends with the error event
            err = await self._failed(turn, ctx, f)
            yield sse(events.error(err.code or err.type, err.message))
        finally:
            try:
                if status == 499:  # settled and recorded first: closing the upstream may wait
                    turn.ex.error = turn.ex.error or CLIENT_CLOSED
                    await self._loop.finish(turn.ex, ctx, status)
            finally:
                aclose = getattr(source, "aclose", None)
                if aclose is not None:
                    await aclose()


async def _aiter(chunks: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for chunk in chunks:
        yield chunk
