"""A student served by vLLM as a LoRA adapter over its base model.

vLLM speaks the OpenAI API, so serving goes through the direct HTTP backend with the
adapter's name as the model. Before first use the adapter is loaded at run time with
`POST /v1/load_lora_adapter` (the server needs `--enable-lora` and
`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`); an adapter already listed by `/v1/models` is
not loaded again.

Requests go out as the student was trained to read them and held to the same grammar as
the embedded engine: the `response_format` instruction in the system turn, the answer
grammar of `gateway/constrain.py` as `structured_outputs.grammar` (vLLM's llguidance
backend), and `tool_choice` "auto" so that vLLM's `hermes` parser reads the calls the
grammar shaped (vLLM would otherwise force its own JSON-list format for "required").
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from gateway.constrain import TOOL_CALL_OPEN, answer_grammar, format_instruction
from gateway.upstream.base import Endpoint, UpstreamFailure, failure_from_status
from gateway.upstream.openai_http import OpenAIHTTPBackend


def tool_tags_are_tokens(student_dir: str | Path) -> bool:
    """Whether the student's tokenizer has `<tool_call>` as one added token (Qwen, scratch)."""
    try:
        data = json.loads((Path(student_dir) / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return any(isinstance(t, dict) and t.get("content") == TOOL_CALL_OPEN
               for t in data.get("added_tokens") or [])


def _with_instruction(messages: Any, instruction: str) -> list[Any]:
    """The messages with the response-format instruction in the system turn (as trained)."""
    out = list(messages) if isinstance(messages, list) else []
    first = out[0] if out and isinstance(out[0], dict) else None
    if first is not None and first.get("role") in ("system", "developer"):
        base = first.get("content") if isinstance(first.get("content"), str) else ""
        out[0] = {**first, "content": f"{base}\n\n{instruction}" if base else instruction}
    else:
        out.insert(0, {"role": "system", "content": instruction})
    return out


def student_request(body: dict[str, Any], *, constrained: bool = True,
                    tag_tokens: bool = False) -> dict[str, Any]:
    """The body vLLM is sent for a student: its prompt as in training, its grammar."""
    out = dict(body)
    instruction = format_instruction(out.pop("response_format", None))
    if instruction:
        out["messages"] = _with_instruction(out.get("messages"), instruction)
    if out.get("tools") and out.get("tool_choice", "auto") != "none":
        out["tool_choice"] = "auto"  # the grammar holds the answer to required / named
    grammar = answer_grammar(body, tag_tokens=tag_tokens) if constrained else None
    if grammar:
        out["structured_outputs"] = {"grammar": grammar}
    return out


class VLLMStudentBackend(OpenAIHTTPBackend):
    def __init__(
        self,
        name: str,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        adapter_name: str,
        adapter_path: str,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        constrained: bool = True,
        tag_tokens: bool = False,
    ) -> None:
        super().__init__(
            name, base_url, session, upstream_model=adapter_name, api_key=api_key,
            timeout_s=timeout_s, connect_timeout_s=connect_timeout_s,
        )
        self.adapter_name = adapter_name
        self.adapter_path = adapter_path
        self._loaded = False
        self._lock = asyncio.Lock()
        self.constrained = constrained  # send each request's answer grammar
        self.tag_tokens = tag_tokens  # `<tool_call>` is one token of the student's tokenizer

    async def _loaded_models(self) -> set[str]:
        async with self._session.get(
            f"{self._base}/models", headers=self.headers, timeout=self._timeout
        ) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise failure_from_status(resp.status, raw)
        data = orjson.loads(raw)
        return {str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)}

    async def ensure_adapter(self) -> None:
        """Load the adapter into the vLLM server unless it is there already."""
        if self._loaded:
            return
        async with self._lock:
            if self._loaded:
                return
            try:
                if self.adapter_name not in await self._loaded_models():
                    payload = {"lora_name": self.adapter_name, "lora_path": self.adapter_path}
                    async with self._session.post(
                        f"{self._base}/load_lora_adapter", data=orjson.dumps(payload),
                        headers=self.headers, timeout=self._timeout,
                    ) as resp:
                        raw = await resp.read()
                        # Another replica may have loaded it between our check and our call.
                        if resp.status >= 400 and b"already" not in raw:
                            raise failure_from_status(resp.status, raw)
            except TimeoutError:
                raise UpstreamFailure("timeout", "vLLM did not answer the adapter load") from None
            except aiohttp.ClientError as e:
                raise UpstreamFailure("connect", f"vLLM unreachable: {type(e).__name__}") from None
            self._loaded = True

    async def complete(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        await self.ensure_adapter()
        return await super().complete(endpoint, self._body(endpoint, body))

    async def stream(self, endpoint: Endpoint, body: dict[str, Any]):  # type: ignore[override]
        await self.ensure_adapter()
        async for chunk in super().stream(endpoint, self._body(endpoint, body)):
            yield chunk

    def _body(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        if endpoint != "chat/completions":
            return body
        return student_request(body, constrained=self.constrained, tag_tokens=self.tag_tokens)
