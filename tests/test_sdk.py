"""The official openai SDK, unchanged but for base_url and api_key, against `slimgate serve`.

The gateway runs as a real subprocess on a loopback port in front of the fake upstream;
afterwards the recorded rows are checked field by field in the SQLite file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from gateway.offline.local import free_port, wait_ready
from tests.fake_upstream import FakeUpstream
from tests.served import START_TIMEOUT_S

KEY = "sk-gw-sdk-test"
PROVIDER_KEY = "sk-provider-planted-777"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, FakeUpstream]]:
    tmp = tmp_path_factory.mktemp("sdk")
    up = FakeUpstream(hang_s=3.0).start()
    db = tmp / "store.db"
    port = free_port()
    (tmp / "config.toml").write_text(f"""
[server]
host = "127.0.0.1"
port = {port}
api_keys_env = "SDK_TEST_KEYS"

[store]
path = "{db}"

[[models]]
name = "gpt-4o-mini"
provider = "openai"
base_url = "{up.base_url}"
api_key_env = "SDK_TEST_PROVIDER_KEY"
timeout_s = 2
max_retries = 0

[[models]]
name = "claude-test"
provider = "anthropic"
model = "claude-3-5-haiku-20241022"
base_url = "{up.root_url}"
api_key_env = "SDK_TEST_PROVIDER_KEY"
max_retries = 0

[worker]
embedded = false  # these tests are about the wire protocol; the loop has its own tests
""")
    env = {**os.environ, "SDK_TEST_KEYS": KEY, "SDK_TEST_PROVIDER_KEY": PROVIDER_KEY}
    log = open(tmp / "gateway.log", "w")  # noqa: SIM115 - closed in the teardown below
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(tmp / "config.toml")],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base + "/readyz", proc, timeout_s=START_TIMEOUT_S)
    except RuntimeError:
        proc.kill()
        raise RuntimeError((tmp / "gateway.log").read_text()) from None
    try:
        yield base + "/v1", db, up
    finally:
        proc.terminate()  # graceful: the recorder flushes on shutdown
        proc.wait(30)
        log.close()
        up.stop()
        logs = (tmp / "gateway.log").read_text()
        assert PROVIDER_KEY not in logs and KEY not in logs
        assert "Traceback" not in logs


@pytest.fixture(scope="module")
def sdk(served: tuple[str, Path, FakeUpstream]) -> openai.OpenAI:
    return openai.OpenAI(base_url=served[0], api_key=KEY, max_retries=0)


def recorded(db: Path, request_id: str) -> dict:
    for _ in range(1200):  # up to a minute: the recorder writes in the background
        con = sqlite3.connect(db)
        con.row_factory = sqlite3.Row
        row = con.execute("SELECT * FROM exchanges WHERE request_id = ?", (request_id,)).fetchone()
        con.close()
        if row is not None:
            return dict(row)
        time.sleep(0.05)
    raise AssertionError(f"request {request_id} was not recorded")


def test_plain_chat(sdk: openai.OpenAI, served: tuple[str, Path, FakeUpstream]) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}], seed=1)
    reply = raw.parse()
    assert reply.choices[0].message.content == "echo: hello there"
    row = recorded(served[1], raw.headers["x-request-id"])
    assert row["endpoint"] == "chat/completions" and row["model"] == "gpt-4o-mini"
    assert row["upstream"] == "gpt-4o-mini" and row["status"] == 200 and row["stream"] == 0
    assert json.loads(row["request"])["messages"] == [{"role": "user", "content": "hello there"}]
    assert json.loads(row["response"])["choices"][0]["message"]["content"] == "echo: hello there"
    assert row["prompt_tokens"] == reply.usage.prompt_tokens
    assert row["completion_tokens"] == reply.usage.completion_tokens
    assert row["finish_reason"] == "stop" and row["latency_ms"] > 0 and row["key_id"]
    assert row["cost_usd"] is not None and row["cost_usd"] > 0  # gpt-4o-mini is priced
    assert row["created_at"] == pytest.approx(time.time(), abs=60)


def test_streaming(sdk: openai.OpenAI, served: tuple[str, Path, FakeUpstream]) -> None:
    with sdk.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "a b c"}], stream=True,
        stream_options={"include_usage": True},
    ) as resp:
        rid = resp.headers["x-request-id"]
        chunks = list(resp.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: a b c"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    row = recorded(served[1], rid)
    assert row["stream"] == 1 and row["ttft_ms"] is not None
    assert json.loads(row["response"])["choices"][0]["message"]["content"] == "echo: a b c"


def test_tool_calls(sdk: openai.OpenAI, served: tuple[str, Path, FakeUpstream]) -> None:
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "call:get_weather Paris"}],
        tools=tools, tool_choice="auto", parallel_tool_calls=True)
    msg = raw.parse().choices[0].message
    assert msg.tool_calls and msg.tool_calls[0].function.name == "get_weather"
    assert json.loads(msg.tool_calls[0].function.arguments)["query"]
    row = recorded(served[1], raw.headers["x-request-id"])
    assert json.loads(row["request"])["tools"][0]["function"]["name"] == "get_weather"
    assert row["finish_reason"] == "tool_calls"


def test_json_mode(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "give json"}],
        response_format={"type": "json_object"})
    assert json.loads(reply.choices[0].message.content or "") == {"echo": "give json"}
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    reply = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "s"}], response_format=schema)
    assert json.loads(reply.choices[0].message.content or "") == {"echo": "s"}


@pytest.mark.parametrize("call,exc,status", [
    (lambda c: c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}]),
     openai.NotFoundError, 404),
    (lambda c: c.chat.completions.create(model="gpt-4o-mini", messages=[]),
     openai.BadRequestError, 400),
    (lambda c: c.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "fault:429"}]),
     openai.RateLimitError, 429),
    (lambda c: c.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "fault:500"}]),
     openai.InternalServerError, 502),
])
def test_errors(sdk: openai.OpenAI, call, exc, status) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(exc) as info:
        call(sdk)
    assert info.value.status_code == status
    assert isinstance(info.value.body, dict) and info.value.body.get("message")


def test_bad_key(served: tuple[str, Path, FakeUpstream]) -> None:
    bad = openai.OpenAI(base_url=served[0], api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_stream_error_after_start(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "fault:cut a b c"}],
        stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_models_and_embeddings(sdk: openai.OpenAI) -> None:
    assert {m.id for m in sdk.models.list()} == {"gpt-4o-mini", "claude-test"}
    assert sdk.models.retrieve("claude-test").id == "claude-test"
    emb = sdk.embeddings.create(model="gpt-4o-mini", input="hello")
    assert len(emb.data[0].embedding) == 3


def test_litellm_translates_anthropic_both_ways(
    sdk: openai.OpenAI, served: tuple[str, Path, FakeUpstream]
) -> None:
    up = served[2]
    raw = sdk.chat.completions.with_raw_response.create(
        model="claude-test", messages=[{"role": "system", "content": "be brief"},
                                       {"role": "user", "content": "bonjour"}], max_tokens=50)
    reply = raw.parse()
    assert reply.choices[0].message.content == "echo: bonjour"
    sent = up.requests[-1]
    assert sent["model"] == "claude-3-5-haiku-20241022"
    assert sent["system"] in ("be brief", [{"type": "text", "text": "be brief"}])
    assert up.headers[-1].get("x-api-key") == PROVIDER_KEY
    row = recorded(served[1], raw.headers["x-request-id"])
    assert row["upstream"] == "claude-test" and row["prompt_tokens"] >= 1
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"query": {"type": "string"}}}}}]
    reply = sdk.chat.completions.create(
        model="claude-test", messages=[{"role": "user", "content": "call:lookup x"}],
        tools=tools, max_tokens=50)
    call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "lookup" and json.loads(call.function.arguments)["query"]
    assert up.requests[-1]["tools"][0]["name"] == "lookup"  # sent in Anthropic's shape
    stream = sdk.chat.completions.create(
        model="claude-test", messages=[{"role": "user", "content": "one two"}],
        stream=True, max_tokens=50)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.strip() == "echo: one two"
