"""A student served by vLLM as a LoRA adapter over its base model.

vLLM speaks the OpenAI API, so serving goes through the direct HTTP backend with the
adapter's name as the model. Before first use the adapter is loaded at run time with
`POST /v1/load_lora_adapter` (the server needs `--enable-lora` and
`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`); an adapter already listed by `/v1/models` is
not loaded again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from gateway.upstream.base import Endpoint, UpstreamFailure, failure_from_status
from gateway.upstream.openai_http import OpenAIHTTPBackend


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
    ) -> None:
        super().__init__(
            name, base_url, session, upstream_model=adapter_name, api_key=api_key,
            timeout_s=timeout_s, connect_timeout_s=connect_timeout_s,
        )
        self.adapter_name = adapter_name
        self.adapter_path = adapter_path
        self._loaded = False
        self._lock = asyncio.Lock()

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
        return await super().complete(endpoint, body)

    async def stream(self, endpoint: Endpoint, body: dict[str, Any]):  # type: ignore[override]
        await self.ensure_adapter()
        async for chunk in super().stream(endpoint, body):
            yield chunk
