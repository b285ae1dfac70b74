"""A student served in-process with transformers, for the embedded (single-process) default.

Generation runs in a worker thread so the event loop never waits on the model. Concurrent
requests to the same student are batched: the first request opens a short window
(`batch_wait_ms`), everything that arrives within it is generated together. torch and
transformers are imported only when the student is loaded, by the `load_model` function the
CLI injects (`distill.loading.load_student`): the gateway never imports the learning package.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, runtime_checkable

from gateway.upstream.base import Endpoint, UpstreamFailure

_DEFAULT_MAX_TOKENS = 256


class LoadedStudent(Protocol):
    """What `load_model` returns: a model answering a batch of chat requests, one generation
    (message, finish reason, token counts) per request."""

    def generate(self, requests: list[dict[str, Any]], max_new_tokens: int) -> list[Any]: ...


@runtime_checkable
class GrammarDecoding(Protocol):
    """A loaded student that decodes under each request's grammar and can be told not to
    (the generative `Student`; an encoder needs no grammar)."""

    constrained: bool


def _max_tokens(body: dict[str, Any]) -> int:
    return int(body.get("max_completion_tokens") or body.get("max_tokens") or _DEFAULT_MAX_TOKENS)


class EmbeddedStudentBackend:
    def __init__(
        self,
        name: str,
        path: str,
        *,
        load_model: Callable[[str], LoadedStudent],
        max_batch: int = 8,
        batch_wait_ms: float = 5.0,
        timeout_s: float = 30.0,
        torch_threads: int = 0,
        constrained: bool = True,
    ) -> None:
        self.name = name
        self.path = path
        self._load_model = load_model  # the injected loader (distill.loading.load_student)
        self._torch_threads = torch_threads  # 0: leave torch's default
        self._constrained = constrained  # decode under each request's contract
        self._max_batch = max_batch
        self._batch_wait_s = batch_wait_ms / 1000
        self._timeout_s = timeout_s
        self._student: Any = None
        self._load_lock = asyncio.Lock()
        self._pending: list[tuple[dict[str, Any], asyncio.Future[Any]]] = []
        self._batcher: asyncio.Task[None] | None = None
        self._gen_lock = asyncio.Lock()  # one generation at a time on this model

    async def load(self) -> None:
        if self._student is not None:
            return
        async with self._load_lock:
            if self._student is None:
                if self._torch_threads:
                    import torch

                    # Process-wide: students are small, and the worker trains beside us.
                    torch.set_num_threads(self._torch_threads)
                student = await asyncio.to_thread(self._load_model, self.path)
                if not self._constrained and isinstance(student, GrammarDecoding):
                    student.constrained = False  # grammars turned off for this engine
                self._student = student

    async def _generate_one(self, body: dict[str, Any]) -> Any:
        await self.load()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((body, fut))
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._run_batch())
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self._timeout_s)
        except TimeoutError:
            raise UpstreamFailure(
                "timeout", f"student '{self.name}' gave no answer within {self._timeout_s:g}s"
            ) from None

    async def _run_batch(self) -> None:
        await asyncio.sleep(self._batch_wait_s)
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            requests = [b for b, _ in batch]
            max_new = max(_max_tokens(b) for b in requests)
            try:
                async with self._gen_lock:
                    results = await asyncio.to_thread(
                        self._student.generate, requests, max_new_tokens=max_new
                    )
            except Exception as e:  # a model failure must fail these requests, not the loop
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(
                            UpstreamFailure("server", f"student '{self.name}' failed: {e}")
                        )
                continue
            for (_, fut), res in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(res)

    def _response(self, body: dict[str, Any], gens: list[Any]) -> dict[str, Any]:
        choices = []
        prompt_tokens = completion_tokens = 0
        for i, g in enumerate(gens):
            choices.append({"index": i, "message": g.message, "finish_reason": g.finish_reason,
                            "logprobs": None})
            prompt_tokens = g.prompt_tokens
            completion_tokens += g.completion_tokens
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model", self.name),
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    async def complete(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        if endpoint != "chat/completions":
            raise UpstreamFailure("client", f"student '{self.name}' serves chat only", status=400)
        n = int(body.get("n") or 1)
        gens = await asyncio.gather(*(self._generate_one(body) for _ in range(n)))
        return self._response(body, list(gens))

    async def stream(
        self, endpoint: Endpoint, body: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        """The whole answer is generated first, then sent as chunks.

        Students are small and fast; generating first lets the gateway check a structured
        answer against the request's contract before the first byte leaves (see
        docs/students.md), at the cost of time to first token on long free text.
        """
        resp = await self.complete(endpoint, body)
        head = {"id": resp["id"], "object": "chat.completion.chunk", "created": resp["created"],
                "model": resp["model"]}
        for choice in resp["choices"]:
            i, msg = choice["index"], choice["message"]
            yield {**head, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                        "finish_reason": None}]}
            text = msg.get("content") or ""  # content may precede tool calls: send both
            for start in range(0, len(text), 16):
                yield {**head, "choices": [{"index": i,
                                            "delta": {"content": text[start:start + 16]},
                                            "finish_reason": None}]}
            if msg.get("tool_calls"):
                calls = [{"index": k, **c} for k, c in enumerate(msg["tool_calls"])]
                yield {**head, "choices": [{"index": i, "delta": {"tool_calls": calls},
                                            "finish_reason": None}]}
            yield {**head, "choices": [{"index": i, "delta": {},
                                        "finish_reason": choice["finish_reason"]}]}
        yield {**head, "choices": [], "usage": resp["usage"]}

    async def aclose(self) -> None:
        self._student = None
