"""vLLM students: the request sent is the one the student was trained on, with the embedded
engine's grammar; against a real vLLM server (CPU build) the adapter is loaded once, and
tool_choice, tools and schemas hold on its answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.constrain import answer_grammar
from gateway.upstream.vllm_student import (
    VLLMStudentBackend,
    student_request,
    tool_tags_are_tokens,
)
from policies.contract import check_contract
from tests.gguf_files import tiny_gguf
from tests.helpers_students import NOTIFY, SET_LEVEL, slotted
from tests.vllm_server import skip_reason, vllm_python, vllm_server

SCHEMA = {"type": "json_schema", "json_schema": {"name": "lvl", "schema": {
    "type": "object", "properties": {"level": {"enum": ["low", "high"]}},
    "required": ["level"], "additionalProperties": False}}}


def test_vllm_is_sent_the_training_prompt_and_the_grammar() -> None:
    body = {"model": "m", "messages": [{"role": "system", "content": "Rate it."},
                                       {"role": "user", "content": "hot"}],
            "response_format": SCHEMA, "tools": [SET_LEVEL], "tool_choice": "required"}
    sent = student_request(body, tag_tokens=True)
    assert "response_format" not in sent  # vLLM would add its own constraint beside ours
    assert sent["messages"][0]["content"].startswith("Rate it.\n\nAnswer with a JSON object")
    assert sent["tool_choice"] == "auto"  # "required" would make vLLM force its JSON list
    assert sent["structured_outputs"] == {"grammar": answer_grammar(body, tag_tokens=True)}
    assert body["tool_choice"] == "required" and "response_format" in body  # not mutated
    free = student_request({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert "structured_outputs" not in free and free["messages"][0]["role"] == "user"
    off = student_request(body, constrained=False)
    assert "structured_outputs" not in off and off["tool_choice"] == "auto"


def test_tool_tags_are_tokens_reads_the_students_tokenizer(tmp_path: Path) -> None:
    assert not tool_tags_are_tokens(tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps(
        {"added_tokens": [{"id": 5, "content": "<tool_call>"}]}))
    assert tool_tags_are_tokens(tmp_path)


async def test_only_adapters_go_to_vllm_other_students_stay_embedded(tmp_path: Path) -> None:
    from gateway.config import parse_config
    from gateway.students import StudentPool
    from gateway.upstream.embedded_student import EmbeddedStudentBackend

    for task, files in (("lora", ["adapter_config.json"]), ("scratch", ["model.safetensors"])):
        d = tmp_path / task / "v1"
        d.mkdir(parents=True)
        for name in ["slimgate.json", *files]:
            (d / name).write_text("{}")
    cfg = parse_config({"distill": {"students_dir": str(tmp_path), "scrub_kinds": []},
                        "students": {"engine": {"type": "vllm",
                                                "base_url": "http://127.0.0.1:9/v1"}}})
    async with aiohttp.ClientSession() as session:
        pool = StudentPool(cfg, session, load_student=lambda path: None)
        lora, scratch = pool.get("lora", 1), pool.get("scratch", 1)
        assert isinstance(lora, VLLMStudentBackend) and lora.adapter_path.endswith("lora/v1")
        assert isinstance(scratch, EmbeddedStudentBackend)
        await pool.aclose()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A tiny Qwen2 written as a GGUF file (as SmolLM2's and Qwen2.5's ship), converted by
    training into a base directory, served by vLLM with a LoRA adapter of it trained on
    slotted data (the Llama family is served by vLLM in tests/test_vllm_export.py)."""
    if vllm_python() is None:
        pytest.skip(skip_reason())
    import torch

    from distill.chat_format import conversation, render
    from distill.train import train_student
    from gateway.config import TrainingConfig

    tmp = tmp_path_factory.mktemp("vllm")
    data = [slotted(i) for i in range(24)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    gguf, _ = tiny_gguf("qwen2", [render(*conversation(ex)) for ex in data],
                        tmp / "tiny-qwen2.gguf", hidden=128)
    train_student(data, base_model=str(gguf), out_dir=tmp / "adapter", bases_dir=tmp / "bases",
                  cfg=TrainingConfig(max_steps=4, batch_size=8), progress=False)
    torch.set_num_threads(threads)
    base = json.loads((tmp / "adapter" / "adapter_config.json").read_text())
    with vllm_server(Path(base["base_model_name_or_path"]), tmp / "vllm.log") as url:
        yield url, tmp / "adapter"


def backend(url: str, adapter: Path, session: aiohttp.ClientSession) -> VLLMStudentBackend:
    return VLLMStudentBackend("levels-v1", url, session, adapter_name="levels-v1",
                              adapter_path=str(adapter), timeout_s=120,
                              tag_tokens=tool_tags_are_tokens(adapter))


async def loaded_adapters(url: str, session: aiohttp.ClientSession) -> list[str]:
    async with session.get(f"{url}/models") as resp:
        return [m["id"] for m in (await resp.json())["data"]]


async def test_real_vllm_loads_the_adapter_once_and_serves_it(served: tuple[str, Path]) -> None:
    url, adapter = served
    body = {"model": "x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    async with aiohttp.ClientSession() as session:
        out = await backend(url, adapter, session).complete("chat/completions", body)
        assert out["model"] == "levels-v1" and out["choices"][0]["message"]["role"] == "assistant"
        assert "levels-v1" in await loaded_adapters(url, session)
        # a second gateway replica finds it listed and does not load it again (vLLM would
        # answer 400 "already loaded", which the backend tolerates too)
        again = await backend(url, adapter, session).complete("chat/completions", body)
        assert again["choices"]
        chunks = [c async for c in backend(url, adapter, session).stream(
            "chat/completions", {**body, "stream": True})]
        assert chunks[-1]["choices"] == [] or chunks[-1]["choices"][0]["finish_reason"]


async def test_real_vllm_answers_hold_to_the_request_contract(served: tuple[str, Path]) -> None:
    url, adapter = served
    base: dict[str, Any] = {"model": "x", "tools": [SET_LEVEL, NOTIFY], "max_tokens": 64,
                            "messages": [{"role": "user", "content": "Set the level for <V1>."}]}
    named = {**base, "parallel_tool_calls": False,
             "tool_choice": {"type": "function", "function": {"name": "set_level"}}}
    schema_only = {**base, "tool_choice": "none", "response_format": SCHEMA}
    async with aiohttp.ClientSession() as session:
        b = backend(url, adapter, session)
        out = await b.complete("chat/completions", named)
        msg = out["choices"][0]["message"]
        (call,) = msg["tool_calls"]  # vLLM's hermes parser read the grammar's one call
        assert call["function"]["name"] == "set_level"
        assert json.loads(call["function"]["arguments"])["level"] in ("low", "high", "<V1>")
        out = await b.complete("chat/completions", schema_only)
        msg = out["choices"][0]["message"]
        assert not msg.get("tool_calls")
        assert json.loads(msg["content"])["level"] in ("low", "high", "<V1>")
        if "<V1>" not in msg["content"]:
            assert check_contract(schema_only, msg) is None
