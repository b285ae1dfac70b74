"""Hostile and random request bodies: never a 500, always OpenAI's error envelope."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fake_upstream import FakeUpstream
from tests.helpers import gateway_config, running_client

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20,
)
FIELDS = ["model", "messages", "max_tokens", "n", "temperature", "tools", "tool_choice",
          "response_format", "stream", "stop", "stream_options", "metadata", "seed", "top_p"]
bodies = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6),
    st.fixed_dictionaries({
        "model": st.sampled_from(["gpt-test", "nope", ""]),
        "messages": st.lists(st.fixed_dictionaries({
            "role": st.sampled_from(["user", "system", "assistant", "tool", "x"]),
            "content": json_values}), max_size=3),
    }, optional={k: json_values for k in ("max_tokens", "n", "response_format", "tools")}),
)


def check(r: httpx.Response) -> None:
    assert r.status_code < 500 or r.status_code in (502, 503, 504), r.text
    if r.status_code >= 400:
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"]


def test_random_bodies_never_500(tmp_path: Path, upstream: FakeUpstream) -> None:
    async def run(samples: list[object]) -> None:
        async with running_client(gateway_config(tmp_path, upstream)) as c:
            for body in samples:
                raw = json.dumps(body).encode()
                for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
                    check(await c.post(path, content=raw,
                                       headers={"content-type": "application/json"}))

    collected: list[object] = []

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(bodies)
    def collect(body: object) -> None:
        collected.append(body)

    collect()
    asyncio.run(run(collected))


async def test_hostile_inputs(client: httpx.AsyncClient) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    for raw in (b"\xc3\x28", b'{"model": "gpt-test", "messages": ' + nested.encode() + b"}",
                b'{"model": 1e999999}', b'{"a": "\\ud800"}', b"null", b'"str"'):
        check(await client.post("/v1/chat/completions", content=raw,
                                headers={"content-type": "application/json"}))
    check(await client.post("/v1/chat/completions", content=b"{}",
                            headers={"content-type": "text/plain"}))
    check(await client.post("/v1/chat/completions", content=b"{}",
                            headers={"content-length": "abc"}))
