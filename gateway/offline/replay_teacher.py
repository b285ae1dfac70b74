"""A replay teacher: an OpenAI-compatible server that answers from recorded exchanges.

For demos, benchmarks and tests without a provider. A request is looked up by the key of
its messages, tools and response format (`gateway.fingerprint.request_key`) and answered with a
recorded chat.completion after a realistic delay (a base latency plus time per output
token, with seeded jitter), as JSON or as an SSE stream. Unknown requests get a 400.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from gateway.fingerprint import request_key
from gateway.offline.traces import TraceError, read_traces

_PIECE = re.compile(r"\s*\S+|\s+\Z")  # a streamed content delta: a word and the space before


def _error(status: int, message: str, code: str, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param,
                      "code": code}}
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _estimate_usage(request: dict[str, Any], response: dict[str, Any]) -> dict[str, int]:
    """About four characters a token, when the record has no usage."""
    prompt = len(orjson.dumps(request.get("messages"))) // 4
    out = 0
    for choice in response.get("choices") or []:
        msg = choice.get("message") or {}
        out += len(msg.get("content") or "") // 4
        out += sum(len((c.get("function") or {}).get("arguments") or "") // 4
                   for c in msg.get("tool_calls") or [])
    prompt, out = max(1, prompt), max(1, out)
    return {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out}


class ReplayTeacher:
    def __init__(
        self,
        records: Mapping[str, list[dict[str, Any]]],
        *,
        latency_ms: float = 400.0,  # time before the answer (non-streaming) / first token
        ms_per_token: float = 8.0,  # generation time per completion token
        jitter: float = 0.25,  # each delay is scaled by a factor in [1 - jitter, 1 + jitter]
        seed: int = 0,  # seeds the jitter, so a benchmark run can be repeated
        host: str = "127.0.0.1",
        port: int = 0,  # 0: an ephemeral port, read back from `port` after start()
    ) -> None:
        self.records = {k: list(v) for k, v in records.items()}  # key -> recorded responses
        self.latency_ms, self.ms_per_token, self.jitter = latency_ms, ms_per_token, jitter
        self.host, self.port = host, port
        self.served = 0
        self.misses = 0
        self._rng = random.Random(seed)
        self._turn: dict[str, itertools.count[int]] = defaultdict(itertools.count)
        self._models = sorted({str(r["model"]) for rs in self.records.values() for r in rs
                               if r.get("model")})
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike[str], **kwargs: Any) -> ReplayTeacher:
        """Load `{"request", "response"}` lines; a request recorded several times is answered
        with its recorded responses in turn."""
        records: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for trace in read_traces(path):
            resp = dict(trace.response)
            resp.setdefault("usage", _estimate_usage(trace.request, resp))
            resp.setdefault("model", trace.request.get("model"))
            records[request_key(trace.request)].append(resp)
        return cls(records, **kwargs)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def __len__(self) -> int:
        return sum(len(v) for v in self.records.values())

    # --- answering -----------------------------------------------------------------------

    def answer_for(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The next recorded response for this request, with a fresh id and time."""
        key = request_key(request)
        recorded = self.records.get(key)
        if not recorded:
            return None
        resp = recorded[next(self._turn[key]) % len(recorded)]
        return {**resp, "id": f"chatcmpl-replay-{uuid.uuid4().hex[:24]}",
                "created": int(time.time())}

    def _delay_s(self, ms: float) -> float:
        return max(0.0, ms * self._rng.uniform(1 - self.jitter, 1 + self.jitter)) / 1000

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as e:
            return _error(400, f"request body is not valid JSON: {e}", "invalid_json")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "a chat request needs a 'messages' array", "invalid_request",
                          "messages")
        resp = self.answer_for(body)
        if resp is None:
            self.misses += 1
            return _error(
                400, "no recorded answer for this request: the replay teacher only answers "
                f"requests whose messages, tools and response_format match one of its "
                f"{len(self.records)} recorded requests exactly", "no_recorded_answer",
                "messages")
        self.served += 1
        tokens = int((resp.get("usage") or {}).get("completion_tokens") or 1)
        if not body.get("stream"):
            await asyncio.sleep(self._delay_s(self.latency_ms + self.ms_per_token * tokens))
            return web.Response(body=orjson.dumps(resp), content_type="application/json")
        return await self._stream(request, body, resp, tokens)

    async def _stream(self, request: web.Request, body: dict[str, Any],
                      resp: dict[str, Any], tokens: int) -> web.StreamResponse:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        head = {"id": resp["id"], "object": "chat.completion.chunk", "created": resp["created"],
                "model": resp.get("model"), "system_fingerprint": resp.get("system_fingerprint")}
        deltas = [d for choice in resp["choices"] for d in _deltas(choice)]
        per_delta = self._delay_s(self.ms_per_token * tokens) / max(1, len(deltas))
        out = web.StreamResponse(headers={"content-type": "text/event-stream",
                                          "cache-control": "no-cache"})
        await out.prepare(request)
        await asyncio.sleep(self._delay_s(self.latency_ms))  # time to first token
        for index, delta, finish in deltas:
            chunk = {**head, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                          "finish_reason": finish}]}
            if include_usage:
                chunk["usage"] = None
            await out.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            if finish is None and per_delta:
                await asyncio.sleep(per_delta)
        if include_usage:
            usage_chunk = {**head, "choices": [], "usage": resp.get("usage")}
            await out.write(b"data: " + orjson.dumps(usage_chunk) + b"\n\n")
        await out.write(b"data: [DONE]\n\n")
        await out.write_eof()
        return out

    async def _list_models(self, request: web.Request) -> web.Response:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "slimgate-replay"}
                for m in self._models]
        return web.Response(body=orjson.dumps({"object": "list", "data": data}),
                            content_type="application/json")

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._list_models)
        return app

    # --- in-process lifecycle (tests, benchmarks) --------------------------------------------

    def start(self) -> ReplayTeacher:
        """Serve on a background thread; returns once the port is bound."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            runner = web.AppRunner(self.build_app(), access_log=None)
            try:
                loop.run_until_complete(runner.setup())
                site = web.TCPSite(runner, self.host, self.port)
                loop.run_until_complete(site.start())
                self.port = int(runner.addresses[0][1])
            except BaseException as e:  # noqa: BLE001 - reported to the starting thread
                failure.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True, name="replay-teacher")
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> ReplayTeacher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _deltas(choice: dict[str, Any]) -> list[tuple[int, dict[str, Any], str | None]]:
    """A recorded choice as the (index, delta, finish_reason) chunks a provider would send."""
    index = int(choice.get("index") or 0)
    msg = choice.get("message") or {}
    content, calls = msg.get("content"), msg.get("tool_calls") or []
    out: list[tuple[int, dict[str, Any], str | None]] = [
        (index, {"role": "assistant", "content": "" if content or not calls else None}, None)
    ]
    out += [(index, {"content": p}, None) for p in _PIECE.findall(content or "")]
    for i, call in enumerate(calls):
        fn = call.get("function") or {}
        args = fn.get("arguments") or ""
        out.append((index, {"tool_calls": [{"index": i, "id": call.get("id"), "type": "function",
                                            "function": {"name": fn.get("name"),
                                                         "arguments": ""}}]}, None))
        out += [(index, {"tool_calls": [{"index": i, "function": {"arguments": args[j:j + 16]}}]},
                 None) for j in range(0, len(args), 16)]
    if msg.get("refusal"):
        out.append((index, {"refusal": msg["refusal"]}, None))
    out.append((index, {}, choice.get("finish_reason") or "stop"))
    return out


def serve_forever(source: str, *, host: str = "127.0.0.1", port: int = 8090,
                  latency_ms: float = 400.0, ms_per_token: float = 8.0, jitter: float = 0.25,
                  seed: int = 0) -> int:
    """Serve `source`'s answers in the foreground until interrupted (`slimgate replay-teacher`)."""
    try:
        teacher = ReplayTeacher.from_jsonl(source, latency_ms=latency_ms,
                                           ms_per_token=ms_per_token, jitter=jitter, seed=seed,
                                           host=host, port=port)
    except TraceError as e:
        print(f"slimgate: {e}", file=sys.stderr)
        return 2
    print(f"replay teacher: {len(teacher)} recorded answers to {len(teacher.records)} requests "
          f"at http://{host}:{port}/v1", file=sys.stderr, flush=True)
    web.run_app(teacher.build_app(), host=host, port=port, print=None, access_log=None)
    return 0
