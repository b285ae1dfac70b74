"""The vLLM student backend loads its LoRA adapter once, then serves under the adapter name."""

from __future__ import annotations

import aiohttp

from gateway.upstream.vllm_student import VLLMStudentBackend
from tests.fake_upstream import FakeUpstream


async def test_adapter_loaded_once_and_used_as_model(fresh_upstream: FakeUpstream) -> None:
    fresh_upstream.adapters.clear()
    fresh_upstream.adapter_loads = 0
    async with aiohttp.ClientSession() as session:
        b = VLLMStudentBackend("triage-v3", fresh_upstream.base_url, session,
                               adapter_name="triage-v3", adapter_path="/students/triage/v3")
        body = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}
        out = await b.complete("chat/completions", body)
        assert out["choices"][0]["message"]["content"] == "echo: hi"
        assert fresh_upstream.adapters == {"triage-v3": "/students/triage/v3"}
        assert fresh_upstream.requests[-1]["model"] == "triage-v3"
        chunks = [c async for c in b.stream("chat/completions", {**body, "stream": True})]
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
        assert fresh_upstream.adapter_loads == 1
        # a second gateway replica finds it listed and does not load it again
        other = VLLMStudentBackend("triage-v3", fresh_upstream.base_url, session,
                                   adapter_name="triage-v3", adapter_path="/students/triage/v3")
        await other.complete("chat/completions", body)
        assert fresh_upstream.adapter_loads == 1
