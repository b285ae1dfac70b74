"""A scriptable loopback LLM server for tests and benchmarks (OpenAI and Anthropic wire formats).

It runs an aiohttp server in its own thread on 127.0.0.1 and an ephemeral port. The last
user message scripts faults: `fault:500`, `fault:429`, `fault:401`, `fault:400`,
`fault:503`, `fault:timeout`, `fault:slowfirst`, `fault:slowrest` (a stream waits `hang_s`
after its first word), `fault:cut`, `fault:badjson`,
`fault:500x2` (fail twice, then answer). `call:NAME` makes a tool call to NAME.
A tool result as the last message is answered `tool said: RESULT` (an agent loop ends).
`/v1/responses` answers natively (Responses API), counting the user turns it was sent.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import orjson
from aiohttp import web


def _last_user(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):
                return " ".join(p.get("text", "") for p in c if isinstance(p, dict))
            return str(c or "")
    return ""


def _usage(prompt: str, completion: str) -> dict[str, int]:
    p, c = max(1, len(prompt) // 4), max(1, len(completion) // 4)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


class FakeUpstream:
    def __init__(self, *, delay_s: float = 0.0, hang_s: float = 30.0) -> None:
        self.delay_s = delay_s  # added to every answer, to mimic a real provider
        self.hang_s = hang_s  # how long `fault:timeout` sleeps
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.attempts: Counter[str] = Counter()
        self.record = True  # benchmarks switch this off
        self.trace_posts = 0  # OTLP export requests received on /v1/traces
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeUpstream:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._chat)
            app.router.add_post("/v1/completions", self._completions)
            app.router.add_post("/v1/embeddings", self._embeddings)
            app.router.add_post("/v1/responses", self._responses)
            app.router.add_post("/v1/messages", self._anthropic)
            app.router.add_post("/v1/traces", self._traces)  # an OTLP sink for benchmarks
            self._runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="fake-upstream")
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- shared scripting ----------------------------------------------------------------

    async def _fault(self, text: str, key: str) -> web.Response | None:
        if "fault:" not in text:
            return None
        fault = text.split("fault:", 1)[1].split()[0]
        self.attempts[key] += 1
        if "x" in fault:  # fault:500x2 = fail the first two attempts of this request
            fault, times = fault.split("x", 1)
            if self.attempts[key] > int(times):
                return None
        if fault == "timeout":
            await asyncio.sleep(self.hang_s)
            return None
        if fault == "badjson":
            return web.Response(body=b"{not json", content_type="application/json")
        if fault.isdigit():
            status = int(fault)
            headers = {"retry-after": "0"} if status == 429 else {}
            err = {"message": f"scripted {status}", "type": "test", "param": None, "code": None}
            return web.json_response({"error": err}, status=status, headers=headers)
        return None

    async def _read(self, request: web.Request) -> dict[str, Any]:
        body: dict[str, Any] = orjson.loads(await request.read())
        if self.record:
            self.requests.append(body)
            self.headers.append(dict(request.headers))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return body

    @staticmethod
    def _answer(body: dict[str, Any], text: str, tool_result: str | None = None) -> dict[str, Any]:
        tools = body.get("tools") or []
        if tool_result is not None:  # a tool's result came back: the agent loop's last turn
            return {"role": "assistant", "content": f"tool said: {tool_result}"}
        if "call:" in text and tools:
            name = text.split("call:", 1)[1].split()[0]
            args = orjson.dumps({"query": text[:40]}).decode()
            return {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": name, "arguments": args}}
            ]}
        rf = (body.get("response_format") or {}).get("type")
        content = orjson.dumps({"echo": text}).decode() if rf in ("json_object", "json_schema") \
            else f"echo: {text}"
        return {"role": "assistant", "content": content}

    # --- OpenAI -----------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._read(request)
        text = _last_user(body.get("messages") or [])
        fault = await self._fault(text, orjson.dumps(body.get("messages")).decode())
        if fault is not None:
            return fault
        messages = body.get("messages") or [{}]
        last = messages[-1]
        msg = self._answer(body, text, last.get("content") if last.get("role") == "tool" else None)
        finish = "tool_calls" if msg.get("tool_calls") else "stop"
        usage = _usage(text, msg.get("content") or "")
        head = {"id": "chatcmpl-fake", "created": int(time.time()), "model": body.get("model")}
        if not body.get("stream"):
            return web.json_response({
                "object": "chat.completion", **head,
                "choices": [{"index": 0, "message": msg, "finish_reason": finish,
                             "logprobs": None}],
                "usage": usage,
            })
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)

        async def send(chunk: dict[str, Any]) -> None:
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")

        def chunk(delta: dict[str, Any], fin: str | None = None) -> dict[str, Any]:
            return {"object": "chat.completion.chunk", **head,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": fin}]}

        if "fault:slowfirst" in text:
            await asyncio.sleep(self.hang_s)
        await send(chunk({"role": "assistant", "content": ""}))
        if msg.get("tool_calls"):
            call = msg["tool_calls"][0]
            args = call["function"]["arguments"]
            await send(chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                              "function": {"name": call["function"]["name"],
                                                           "arguments": args[:5]}}]}))
            await send(chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[5:]}}]}))
        else:
            words = msg["content"].split(" ")
            for i, w in enumerate(words):
                await send(chunk({"content": w if i == 0 else " " + w}))
                if "fault:slowrest" in text and i == 0:
                    await asyncio.sleep(self.hang_s)
                if "fault:cut" in text and i == 1:
                    request.transport.close()  # type: ignore[union-attr]
                    return resp
        await send(chunk({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            await send({"object": "chat.completion.chunk", **head, "choices": [], "usage": usage})
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def _traces(self, request: web.Request) -> web.Response:
        self.trace_posts += 1
        await request.read()
        return web.Response(status=200)

    async def _completions(self, request: web.Request) -> web.Response:
        body = await self._read(request)
        prompt = str(body.get("prompt"))
        return web.json_response({
            "id": "cmpl-fake", "object": "text_completion", "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "text": f"echo: {prompt}", "finish_reason": "stop",
                         "logprobs": None}],
            "usage": _usage(prompt, prompt),
        })

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await self._read(request)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                for i in range(len(inputs))]
        return web.json_response({"object": "list", "data": data, "model": body.get("model"),
                                  "usage": {"prompt_tokens": 3, "total_tokens": 3}})

    # --- OpenAI Responses API (for native mode) ---------------------------------------------

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await self._read(request)
        items = body.get("input")
        items = [{"role": "user", "content": items}] if isinstance(items, str) else items or []
        text = _last_user([i for i in items if i.get("type", "message") == "message"])
        fault = await self._fault(text, orjson.dumps(items).decode())
        if fault is not None:
            return fault
        chat_tools = [{"function": t} for t in body.get("tools") or [] if t["type"] == "function"]
        fmt = ((body.get("text") or {}).get("format") or {}).get("type")
        last = items[-1] if items else {}
        result = last.get("output") if last.get("type") == "function_call_output" else None
        msg = self._answer({"tools": chat_tools, "response_format": {"type": fmt}}, text,
                           result if isinstance(result, str) or result is None else str(result))
        turns = sum(1 for i in items if i.get("role") == "user")
        if msg.get("tool_calls"):
            fn = msg["tool_calls"][0]["function"]
            item = {"id": "fc_native", "type": "function_call", "status": "completed",
                    "call_id": "call_native", "name": fn["name"], "arguments": fn["arguments"]}
        else:
            content = msg["content"] + (f" (turn {turns})" if turns > 1 else "")
            item = {"id": "msg_native", "type": "message", "status": "completed",
                    "role": "assistant", "content": [
                        {"type": "output_text", "text": content, "annotations": []}]}
        u = _usage(text, msg.get("content") or "")
        resp = {"id": f"resp_upstream_{time.monotonic_ns()}", "object": "response",
                "created_at": int(time.time()), "status": "completed", "model": body["model"],
                "output": [item], "parallel_tool_calls": True, "tool_choice": "auto",
                "tools": body.get("tools") or [], "usage": {
                    "input_tokens": u["prompt_tokens"], "output_tokens": u["completion_tokens"],
                    "total_tokens": u["total_tokens"], "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens_details": {"reasoning_tokens": 0}}}
        if not body.get("stream"):
            return web.json_response(resp)
        out = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await out.prepare(request)
        seq = 0

        async def event(kind: str, **fields: Any) -> None:
            nonlocal seq
            data = orjson.dumps({"type": kind, **fields, "sequence_number": seq})
            seq += 1
            await out.write(f"event: {kind}\n".encode() + b"data: " + data + b"\n\n")

        started = {**resp, "status": "in_progress", "output": [], "usage": None}
        await event("response.created", response=started)
        await event("response.in_progress", response=started)
        await event("response.output_item.added", output_index=0, item={**item, "status":
                                                                      "in_progress"})
        if item["type"] == "message":
            words = item["content"][0]["text"].split(" ")
            where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
            await event("response.content_part.added", **where,
                        part={"type": "output_text", "text": "", "annotations": []})
            for i, w in enumerate(words):
                await event("response.output_text.delta", **where,
                            delta=w if i == 0 else " " + w, logprobs=[])
                if "fault:slowrest" in text and i == 0:
                    await asyncio.sleep(self.hang_s)
                if "fault:cut" in text and i == 1:
                    request.transport.close()  # type: ignore[union-attr]
                    return out
            await event("response.output_text.done", **where, text=item["content"][0]["text"],
                        logprobs=[])
            await event("response.content_part.done", **where, part=item["content"][0])
        else:
            await event("response.function_call_arguments.delta", item_id=item["id"],
                        output_index=0, delta=item["arguments"])
            await event("response.function_call_arguments.done", item_id=item["id"],
                        output_index=0, name=item["name"], arguments=item["arguments"])
        await event("response.output_item.done", output_index=0, item=item)
        await event("response.completed", response=resp)
        return out

    # --- Anthropic Messages API (for the litellm path) -------------------------------------

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        body = await self._read(request)
        text = _last_user(body.get("messages") or [])
        fault = await self._fault(text, orjson.dumps(body.get("messages")).decode())
        if fault is not None:
            return fault
        tools = body.get("tools") or []
        if "call:" in text and tools:
            name = text.split("call:", 1)[1].split()[0]
            content = [{"type": "tool_use", "id": "toolu_1", "name": name,
                        "input": {"query": text[:40]}}]
            stop = "tool_use"
        else:
            content = [{"type": "text", "text": f"echo: {text}"}]
            stop = "end_turn"
        usage = {"input_tokens": max(1, len(text) // 4), "output_tokens": 5}
        msg = {"id": "msg_fake", "type": "message", "role": "assistant",
               "model": body.get("model"), "content": content, "stop_reason": stop,
               "stop_sequence": None, "usage": usage}
        if not body.get("stream"):
            return web.json_response(msg)
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)

        async def event(name: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {name}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n")

        await event("message_start", {"type": "message_start", "message": {
            **msg, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 0}}})
        await event("content_block_start", {"type": "content_block_start", "index": 0,
                                            "content_block": {"type": "text", "text": ""}})
        for w in f"echo: {text}".split(" "):
            await event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "text_delta", "text": w + " "}})
        await event("content_block_stop", {"type": "content_block_stop", "index": 0})
        await event("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": stop, "stop_sequence": None},
                                      "usage": {"output_tokens": 5}})
        await event("message_stop", {"type": "message_stop"})
        return resp


def main() -> None:
    """Run the fake upstream in the foreground (used by the benchmarks)."""
    import argparse

    p = argparse.ArgumentParser(description="loopback fake LLM upstream")
    p.add_argument("--delay-ms", type=float, default=0.0)
    args = p.parse_args()
    up = FakeUpstream(delay_s=args.delay_ms / 1000)
    up.record = False
    up.start()
    print(up.port, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        up.stop()


if __name__ == "__main__":
    main()
