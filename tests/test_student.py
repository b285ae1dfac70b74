"""A saved student reloads and answers: tool calls and JSON that stop at the end token,
batched the same as alone, within each request's own token cap and stop strings."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.helpers_students import TEN_CITIES, check_request, weather_request

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def student(fixed_answer_student: Path) -> Any:
    from distill.student import Student

    return Student.load(fixed_answer_student)


def test_answers_parse_and_end_at_the_end_token(student: Any) -> None:
    tool, js = student.generate([weather_request("Lima"), check_request("Rome")], max_new_tokens=64)
    assert tool.finish_reason == "tool_calls"
    [call] = tool.message["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert call["id"].startswith("call_") and tool.message["content"] is None
    assert js.finish_reason == "stop" and json.loads(js.message["content"]) == {"ok": True}
    assert js.completion_tokens < 64 and tool.completion_tokens < 64
    prompt = student.tokenizer.apply_chat_template(
        [{"role": "system", "content": "Check the city.\n\nAnswer with a JSON object."},
         {"role": "user", "content": "Rome"}], add_generation_prompt=True)
    assert js.prompt_tokens == len(prompt["input_ids"])


def test_a_batch_answers_like_each_request_alone(student: Any) -> None:
    requests = [weather_request("Oslo"), check_request("Bern"),
                check_request("Quito"), weather_request("Dakar")]
    together = student.generate(requests)
    alone = [student.generate([r])[0] for r in requests]
    assert [g.text for g in together] == [g.text for g in alone]
    assert [g.finish_reason for g in together] == ["tool_calls", "stop", "stop", "tool_calls"]


def test_token_caps_and_stop_strings_are_per_request(student: Any) -> None:
    capped, free, stopped, newest = student.generate([
        {**check_request("Lima"), "max_tokens": 3},
        check_request("Lima"),
        {**check_request("Lima"), "stop": ["true"]},
        {**check_request("Lima"), "max_tokens": 50, "max_completion_tokens": 2},
    ])
    assert (capped.finish_reason, capped.completion_tokens) == ("length", 3)
    assert free.finish_reason == "stop" and free.text.startswith(capped.text)
    assert stopped.finish_reason == "stop" and stopped.text == '{"ok": '
    assert (newest.finish_reason, newest.completion_tokens) == ("length", 2)
    [ceiling] = student.generate([{**check_request("Lima"), "max_tokens": 100}], max_new_tokens=2)
    assert ceiling.completion_tokens == 2
    assert student.generate([]) == []


def test_generate_from_several_threads(student: Any) -> None:
    results: dict[int, Any] = {}

    def run(i: int) -> None:
        city = TEN_CITIES[i]
        results[i] = student.generate([weather_request(city), check_request(city)])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 1, 2]  # every thread got its answers
    for gens in results.values():
        assert [g.finish_reason for g in gens] == ["tool_calls", "stop"]


LONG_SYSTEM = ("Check the city the user names against the list of cities we serve, and "
               "answer with a JSON object that says whether it is on the list. " * 3)


def long_request(city: str) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": LONG_SYSTEM},
                         {"role": "user", "content": f"Is {city} served?"}],
            "response_format": {"type": "json_object"}, "max_tokens": 12}


def test_the_shared_prompt_runs_once_and_answers_do_not_change(student: Any) -> None:
    from distill.student import MIN_SHARED

    student.reuse_prefix = False
    plain = [student.generate([long_request(c)])[0].text for c in TEN_CITIES[:3]]
    plain_batch = [g.text for g in student.generate([long_request(c) for c in TEN_CITIES[3:6]])]
    student.reuse_prefix = True
    student.prefix.__init__()  # nothing kept yet
    widths: list[int] = []
    hook = student.model.register_forward_pre_hook(
        lambda _m, _a, kw: widths.append(kw["input_ids"].shape[1]) if "input_ids" in kw else None,
        with_kwargs=True)
    try:
        reused = []
        for c in TEN_CITIES[:3]:
            widths.clear()
            reused.append(student.generate([long_request(c)])[0].text)
            first = widths[0]
        batch = [g.text for g in student.generate([long_request(c) for c in TEN_CITIES[3:6]])]
    finally:
        hook.remove()
    assert reused == plain and batch == plain_batch
    shared = len(student.prefix.ids)
    assert shared >= MIN_SHARED  # the system prompt, kept after the second request
    whole = len(student.tokenizer(prompt_of(student, long_request(TEN_CITIES[2])))["input_ids"])
    assert first == whole - shared  # the third request ran only its own tokens
    # a request with another system prompt is answered as before (the prefix is re-chosen)
    other = student.generate([check_request("Lima")])[0].text
    student.reuse_prefix = False
    assert other == student.generate([check_request("Lima")])[0].text
    student.reuse_prefix = True


def prompt_of(student: Any, request: dict[str, Any]) -> str:
    from distill.chat_format import prompt_text

    return prompt_text(student.tokenizer, request)
