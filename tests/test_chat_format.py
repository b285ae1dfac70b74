"""The student conversation format: what a student is shown, and how its raw text is read back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from distill.chat_format import (
    IM_END,
    conversation,
    parse_answer,
    prepare,
    render,
)

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {}}}}


def call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"id": "call_teacher", "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)}}


def example(answer: dict[str, Any], *, tools: list[dict[str, Any]] | None = None,
            response_format: dict[str, Any] | None = None,
            messages: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"messages": messages or [{"role": "system", "content": "You help travellers."},
                                     {"role": "user", "content": "Weather in Paris and Oslo?"}],
            "tools": tools, "response_format": response_format,
            "answer": {"role": "assistant", **answer}}


def answer_text(ex: dict[str, Any]) -> str:
    """What the student must generate for `ex`: the full rendering minus the prompt."""
    prompt = render(*prepare(ex), add_generation_prompt=True)
    full = render(*conversation(ex))
    assert full.startswith(prompt)
    text = full[len(prompt):]
    assert text.endswith(IM_END + "\n")
    return text[: -len(IM_END) - 1]


def calls_of(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in message.get("tool_calls") or []]


def test_content_round_trip() -> None:
    ex = example({"content": "  Pack an umbrella.\n"})
    text = answer_text(ex)
    assert parse_answer(text, ex) == {"role": "assistant", "content": "Pack an umbrella."}
    assert "<|im_start|>system\nYou help travellers.<|im_end|>\n" in render(*prepare(ex))


def test_json_schema_becomes_a_system_instruction_and_round_trips() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}}
    ex = example({"content": '{"city": "Paris"}'}, response_format=fmt)
    messages, _ = prepare(ex)
    assert messages[0]["content"] == (
        'You help travellers.\n\nAnswer with a JSON object matching this schema: '
        '{"type":"object","properties":{"city":{"type":"string"}}}')
    assert json.loads(parse_answer(answer_text(ex), ex)["content"]) == {"city": "Paris"}


def test_response_format_adds_a_system_turn_when_there_is_none() -> None:
    ex = example({"content": "{}"}, response_format={"type": "json_object"},
                 messages=[{"role": "user", "content": [{"type": "text", "text": "hi"},
                                                        {"type": "text", "text": " there"}]}])
    messages, tools = prepare(ex)
    assert messages == [{"role": "system", "content": "Answer with a JSON object."},
                        {"role": "user", "content": "hi there"}]
    assert tools is None


def test_single_tool_call_is_a_hermes_block_and_round_trips() -> None:
    ex = example({"content": None, "tool_calls": [call("get_weather", {"city": "Paris"})]},
                 tools=[WEATHER, TIME])
    text = answer_text(ex)
    assert text == ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
                    '</tool_call>')
    msg = parse_answer(text, ex)
    assert msg["content"] is None
    assert calls_of(msg) == [("get_weather", {"city": "Paris"})]
    tc = msg["tool_calls"][0]
    assert tc["id"].startswith("call_") and tc["type"] == "function"
    assert tc["function"]["arguments"] == '{"city":"Paris"}'  # compact JSON string
    system = render(*prepare(ex)).split(IM_END)[0]
    assert json.dumps(WEATHER) in system and json.dumps(TIME) in system


def test_parallel_tool_calls_and_leading_content_round_trip() -> None:
    ex = example({"content": "Checking both.", "tool_calls": [
        call("get_weather", {"city": "Paris"}), call("get_weather", {"city": "Oslo"})]},
        tools=[WEATHER])
    msg = parse_answer(answer_text(ex), ex)
    assert msg["content"] == "Checking both."
    assert calls_of(msg) == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})]
    assert msg["tool_calls"][0]["id"] != msg["tool_calls"][1]["id"]


def test_tool_results_are_a_tool_turn_after_the_call() -> None:
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None,
         "tool_calls": [call("get_weather", {"city": "Paris"})]},
        {"role": "tool", "tool_call_id": "call_teacher", "content": '{"temp": 21}'},
    ]
    ex = example({"content": "It is 21 degrees."}, tools=[WEATHER], messages=history)
    prompt = render(*prepare(ex), add_generation_prompt=True)
    assert prompt.endswith(
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": '
        '"Paris"}}\n</tool_call><|im_end|>\n<|im_start|>tool\n{"temp": 21}<|im_end|>\n'
        '<|im_start|>assistant\n')
    assert parse_answer(answer_text(ex), ex)["content"] == "It is 21 degrees."


def test_scratch_tokenizer_template_renders_exactly_like_render() -> None:
    """transformers (and vLLM, from the saved tokenizer) see the same text as training."""
    from distill.scratch import train_tokenizer

    history = [{"role": "developer", "content": "Be brief."},
               {"role": "user", "content": "Weather in Paris?"},
               {"role": "assistant", "content": None,
                "tool_calls": [call("get_weather", {"city": "Paris"})]},
               {"role": "tool", "tool_call_id": "call_teacher", "content": "21C"}]
    ex = example({"content": "Warm."}, tools=[WEATHER], messages=history,
                 response_format={"type": "json_object"})
    tok = train_tokenizer([render(*conversation(ex))] * 3, vocab_size=400)
    messages, tools = conversation(ex)
    assert tok.apply_chat_template(messages, tools=tools, tokenize=False) == render(messages, tools)
    ids = tok(render(messages, tools), add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == render(messages, tools)
    for marker in ("<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"):
        assert len(tok(marker, add_special_tokens=False)["input_ids"]) == 1


def test_bare_json_call_of_an_offered_tool_is_a_tool_call() -> None:
    req = {"tools": [WEATHER]}
    msg = parse_answer('{"name": "get_weather", "arguments": {"city": "Lima"}}', req)
    assert calls_of(msg) == [("get_weather", {"city": "Lima"})]
    assert parse_answer('{"name": "unknown", "arguments": {}}', req)["content"] is not None
    assert "tool_calls" not in parse_answer('{"name": "get_weather", "arguments": {}}', {})


def test_tool_choice_none_keeps_text_as_content() -> None:
    text = '<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call>'
    assert parse_answer(text, {"tools": [WEATHER], "tool_choice": "none"}) == {
        "role": "assistant", "content": text}


def test_reasoning_block_and_trailing_turn_end_are_dropped() -> None:
    text = '<think>\n\n</think>\n\n{"a": 1}<|im_end|>\nleftover'
    assert parse_answer(text, {}) == {"role": "assistant", "content": '{"a": 1}'}


@pytest.mark.parametrize("text", [
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par",  # cut off
    "<tool_call>\n{not json}\n</tool_call>",
    "<tool_call>\n[1, 2]\n</tool_call>",
    "<tool_call>\n{\"arguments\": {}}\n</tool_call>",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": \"city=Paris\"}\n</tool_call>",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": [1]}\n</tool_call>",
    '<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call><tool_call>\n{"na',
    "</tool_call></tool_call><tool_call>",
    "\x00\ufffd<|im_start|>assistant",
    "",
    "[{\"name\": \"get_weather\"}, 3]",
])
def test_malformed_tool_output_becomes_content(text: str) -> None:
    msg = parse_answer(text, {"tools": [WEATHER]})
    assert "tool_calls" not in msg
    assert msg["content"] == text.split(IM_END)[0].strip()


@pytest.mark.parametrize("request_", [None, {}, {"tools": "nope"}, {"tools": [None, 3]},
                                      {"tools": [{"function": None}]}, []])
def test_garbage_requests_never_raise(request_: Any) -> None:
    msg = parse_answer('<tool_call>\n{"name": "x", "arguments": {}}\n</tool_call>', request_)
    assert msg["role"] == "assistant"
