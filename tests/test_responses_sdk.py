"""Official clients of the Responses API against `slimgate serve` over a real socket.

openai-python (create, stream, function calling, three chained turns, structured output),
openai-agents with its default model settings, LangChain's ChatOpenAI with
`use_responses_api=True`, and the Node `openai` SDK (installed from npm at test time).
Each runs against a translate-mode model (chat completions upstream) and, where it says
something more, a native one. The SDKs' own parsers are the judges of the wire format.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from pydantic import BaseModel

from gateway.offline.local import free_port
from tests.fake_upstream import FakeUpstream
from tests.served import ROOT, start_gateway

KEY, OTHER_KEY = "sk-gw-responses-1", "sk-gw-responses-2"
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                         "required": ["query"], "additionalProperties": False}}]
MODELS = ["translated", "native"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, FakeUpstream]]:
    tmp = tmp_path_factory.mktemp("responses-sdk")
    up = FakeUpstream().start()
    port = free_port()
    cfg = tmp / "config.toml"
    cfg.write_text(f"""
[server]
host = "127.0.0.1"
port = {port}
api_keys_env = "RESPONSES_TEST_KEYS"
log_level = "warning"

[store]
path = "{tmp / 'store.db'}"

[[models]]
name = "translated"
provider = "openai"
base_url = "{up.base_url}"
max_retries = 0

[[models]]
name = "native"
provider = "openai"
base_url = "{up.base_url}"
responses = "native"
max_retries = 0

[worker]
embedded = false
""")
    proc = start_gateway(cfg, port, tmp / "gateway.log",
                         {"RESPONSES_TEST_KEYS": f"{KEY},{OTHER_KEY}"})
    try:
        yield f"http://127.0.0.1:{port}/v1", up
    finally:
        proc.terminate()
        proc.wait(30)
        up.stop()
        assert "Traceback" not in (tmp / "gateway.log").read_text()


@pytest.fixture(scope="module")
def sdk(served: tuple[str, FakeUpstream]) -> openai.OpenAI:
    return openai.OpenAI(base_url=served[0], api_key=KEY, max_retries=0)


@pytest.mark.parametrize("model", MODELS)
def test_create_retrieve_delete(sdk: openai.OpenAI, served: tuple[str, FakeUpstream],
                                model: str) -> None:
    resp = sdk.responses.create(model=model, input="hello there", instructions="be brief",
                                temperature=0.2, max_output_tokens=50, metadata={"run": "1"})
    assert resp.output_text == "echo: hello there" and resp.status == "completed"
    assert resp.usage is not None and resp.usage.total_tokens > 0
    again = sdk.responses.retrieve(resp.id)
    assert again.output_text == resp.output_text
    items = sdk.responses.input_items.list(resp.id)
    assert [i.type for i in items.data] == ["message"]
    other = openai.OpenAI(base_url=served[0], api_key=OTHER_KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(resp.id)  # keys do not see each other's conversations
    sdk.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(resp.id)


@pytest.mark.parametrize("model", MODELS)
def test_streaming(sdk: openai.OpenAI, model: str) -> None:
    with sdk.responses.stream(model=model, input="one two three") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "echo: one two three"
    raw = list(sdk.responses.create(model=model, input="x", stream=True))
    assert [e.sequence_number for e in raw] == list(range(len(raw)))
    assert raw[0].type == "response.created" and raw[-1].type == "response.completed"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_function_call_round_trip(sdk: openai.OpenAI, model: str, stream: bool) -> None:
    if stream:
        with sdk.responses.stream(model=model, input="call:get_weather Paris",
                                  tools=TOOLS) as s:  # type: ignore[arg-type]
            arg_deltas = [e.delta for e in s if e.type == "response.function_call_arguments.delta"]
            first = s.get_final_response()
        assert "".join(arg_deltas) == first.output[0].arguments  # type: ignore[union-attr]
    else:
        first = sdk.responses.create(model=model, input="call:get_weather Paris",
                                     tools=TOOLS)  # type: ignore[arg-type]
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments)["query"]
    second = sdk.responses.create(
        model=model, previous_response_id=first.id, tools=TOOLS,  # type: ignore[arg-type]
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert second.output_text == "tool said: sunny"


def test_three_turns_with_previous_response_id(sdk: openai.OpenAI,
                                               served: tuple[str, FakeUpstream]) -> None:
    up = served[1]
    one = sdk.responses.create(model="translated", input="first")
    two = sdk.responses.create(model="native", input="second", previous_response_id=one.id)
    three = sdk.responses.create(model="translated", input="third", previous_response_id=two.id)
    assert two.output_text == "echo: second (turn 2)"  # the native upstream saw both turns
    assert three.previous_response_id == two.id
    assert [m["content"] for m in up.requests[-1]["messages"]] == [
        "first", "echo: first", "second", "echo: second (turn 2)", "third"]
    items = sdk.responses.input_items.list(three.id, order="asc")
    assert [getattr(i, "role", None) for i in items.data] == \
        ["user", "assistant", "user", "assistant", "user"]


class Weather(BaseModel):
    echo: str


@pytest.mark.parametrize("model", MODELS)
def test_structured_output_json_schema(sdk: openai.OpenAI, served: tuple[str, FakeUpstream],
                                       model: str) -> None:
    parsed = sdk.responses.parse(model=model, input="rain", text_format=Weather)
    assert parsed.output_parsed == Weather(echo="rain")
    sent = served[1].requests[-1]
    fmt = sent["response_format"]["json_schema"] if model == "translated" else \
        sent["text"]["format"]
    assert fmt["name"] == "Weather" and fmt["schema"]["properties"]["echo"]["type"] == "string"


def test_openai_agents_runs_its_tool_loop(served: tuple[str, FakeUpstream]) -> None:
    agents = pytest.importorskip("agents")
    agents.set_tracing_disabled(True)  # the default exporter would call OpenAI
    seen: list[str] = []

    @agents.function_tool
    def get_weather(query: str) -> str:
        """Weather for a city."""
        seen.append(query)
        return "sunny and 21C"

    async def run_both() -> list[str]:
        # The way the SDK's docs point it elsewhere: a default client; models by name.
        agents.set_default_openai_client(
            openai.AsyncOpenAI(base_url=served[0], api_key=KEY, max_retries=0))
        out = []
        for model in MODELS:
            agent = agents.Agent(name="weather", instructions="Answer with the weather.",
                                 tools=[get_weather], model=model)
            out.append((await agents.Runner.run(agent, "call:get_weather Paris")).final_output)
        return out

    assert asyncio.run(run_both()) == ["tool said: sunny and 21C"] * 2
    assert len(seen) == 2


def test_langchain_chat_openai_with_responses_api(served: tuple[str, FakeUpstream]) -> None:
    lc = pytest.importorskip("langchain_openai")
    for model in MODELS:
        llm = lc.ChatOpenAI(model=model, base_url=served[0], api_key=KEY,
                            use_responses_api=True, max_retries=0)
        assert llm.invoke("bonjour").text == "echo: bonjour"
        with_tools = llm.bind_tools([TOOLS[0]])
        msg = with_tools.invoke("call:get_weather Lima")
        assert msg.tool_calls[0]["name"] == "get_weather"
        chunks = list(llm.stream("a b"))
        assert "".join(c.text for c in chunks) == "echo: a b"


NODE_SCRIPT = """
const OpenAI = require("openai");
const client = new OpenAI({ baseURL: process.env.BASE, apiKey: process.env.KEY, maxRetries: 0 });
(async () => {
  const out = {};
  for (const model of ["translated", "native"]) {
    const r = await client.responses.create({ model, input: "from node" });
    const s = await client.responses.create({ model, input: "node stream", stream: true });
    let text = "", last = null;
    for await (const ev of s) {
      if (ev.type === "response.output_text.delta") text += ev.delta;
      last = ev.type;
    }
    out[model] = { text: r.output_text, streamed: text, last };
  }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def test_node_openai_sdk(served: tuple[str, FakeUpstream],
                         tmp_path_factory: pytest.TempPathFactory) -> None:
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        pytest.skip("npm/node are not installed: the Node SDK check needs them")
    cache = Path(os.environ.get("SLIMGATE_NODE_DIR", ROOT / ".node-sdk"))
    if not (cache / "node_modules" / "openai").exists():
        cache.mkdir(exist_ok=True)
        done = subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund",
                               "--prefix", str(cache), "openai@^6"], capture_output=True,
                              text=True, timeout=300)
        if done.returncode != 0:
            pytest.skip(f"npm could not install the openai package: {done.stderr[-300:]}")
    script = tmp_path_factory.mktemp("node") / "check.cjs"
    script.write_text(NODE_SCRIPT)
    run = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "BASE": served[0], "KEY": KEY,
                              "NODE_PATH": str(cache / "node_modules")})
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    for model in MODELS:
        assert out[model] == {"text": "echo: from node", "streamed": "echo: node stream",
                              "last": "response.completed"}
