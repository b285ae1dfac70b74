"""The judged comparator's pure parts: strict verdicts, mapping back, prechecks, sampling."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, parse_config
from policies.judge import (
    MAX_ANSWER_CHARS,
    MAX_REQUEST_CHARS,
    RUBRIC,
    judge_messages,
    judged_comparison,
    parse_verdict,
    precheck,
    request_text,
    sampled,
    text_pair,
)
from policies.settings import PolicyConfig


def text(content: str) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


@pytest.mark.parametrize("reply", ["SAME", "  SAME\n", "A_EXTRA", "B_EXTRA", "CONFLICT"])
def test_exact_verdict_words_parse(reply: str) -> None:
    assert not parse_verdict(reply, student_first=True).failed


@pytest.mark.parametrize("reply", [
    None, "", "same", "Same", "SAME.", "SAME because both refund", "Verdict: SAME", "**SAME**",
    "SAME\nCONFLICT", "DIFFERENT", "A EXTRA", "'SAME'", "Yes",
])
def test_anything_else_is_a_judge_failure_and_never_agrees(reply: str | None) -> None:
    verdict = parse_verdict(reply, student_first=True)
    assert verdict.failed and not verdict.agree
    assert verdict.detail.startswith("judge failure")
    comparison = judged_comparison("text", text("We refunded you."), text("Refund sent."),
                                   None, verdict)
    assert not comparison.agree and comparison.score == 0.0


def test_positions_are_mapped_back_to_student_and_teacher() -> None:
    # student shown as A: "A states more" means the student does
    assert parse_verdict("A_EXTRA", student_first=True).outcome == "student_extra"
    assert parse_verdict("B_EXTRA", student_first=True).outcome == "student_missing"
    # student shown as B: the same words mean the opposite
    assert parse_verdict("A_EXTRA", student_first=False).outcome == "student_missing"
    assert parse_verdict("B_EXTRA", student_first=False).outcome == "student_extra"
    assert parse_verdict("SAME", student_first=False).agree
    assert not parse_verdict("CONFLICT", student_first=False).agree


def test_only_same_agrees() -> None:
    for word in ("A_EXTRA", "B_EXTRA", "CONFLICT"):
        c = judged_comparison("text", text("We sent a replacement."), text("We refunded you."),
                              None, parse_verdict(word, student_first=True))
        assert not c.agree and c.valid
    c = judged_comparison("text", text("Your refund is on its way."), text("We refunded you."),
                          None, parse_verdict("SAME", student_first=True))
    assert c.agree and c.score == 1.0


def test_numbers_that_differ_never_agree_and_cost_no_call() -> None:
    verdict = precheck("We refunded $40.", "We refunded $400.")
    assert verdict is not None and not verdict.agree and "numbers differ" in verdict.detail
    assert precheck("Refund of 1,000 sent", "We sent 1000 back") is None  # same number: judge
    assert precheck("Same words here.", "Same   words here.") is not None  # identical text
    assert precheck("Same words here.", "Same   words here.").agree  # type: ignore[union-attr]


def test_answers_too_long_to_send_whole_are_not_judged() -> None:
    long = "word " * (MAX_ANSWER_CHARS // 5 + 10)
    verdict = precheck(long, long + "more")
    assert verdict is not None and verdict.failed and not verdict.agree


def test_the_contract_still_applies_whatever_the_judge_says() -> None:
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "refund", "arguments": "{}"}}]}
    same = parse_verdict("SAME", student_first=True)
    c = judged_comparison("tool_call", call, text("We refunded you."), None, same)
    assert not c.agree and not c.valid
    assert text_pair("tool_call", call, text("We refunded you.")) is None
    assert text_pair("json", text('{"a": 1}'), text('{"a": 2}')) is None  # structured: no judge
    assert text_pair("text", text("  "), text("We refunded you.")) is None  # empty: wrong shape


def test_the_prompt_holds_the_rubric_and_this_request_only() -> None:
    request = {"messages": [{"role": "system", "content": "SYSTEM PROMPT"},
                            {"role": "user", "content": "Where is my order 7?"}]}
    messages = judge_messages(request_text(request), "first answer", "second answer")
    assert messages[0] == {"role": "system", "content": RUBRIC}
    user = messages[1]["content"]
    assert "Where is my order 7?" in user and "SYSTEM PROMPT" not in user
    assert user.index("first answer") < user.index("second answer")
    assert len(messages) == 2
    big = {"messages": [{"role": "user", "content": "x" * (MAX_REQUEST_CHARS * 3)}]}
    assert len(request_text(big)) < MAX_REQUEST_CHARS + 10


def test_sampling_follows_the_rate_and_is_the_same_every_time() -> None:
    ids = [f"req-{i}" for i in range(4000)]
    assert not any(sampled(i, 0.0) for i in ids)
    assert all(sampled(i, 1.0) for i in ids)
    chosen = [i for i in ids if sampled(i, 0.25)]
    assert 0.22 < len(chosen) / len(ids) < 0.28
    assert chosen == [i for i in ids if sampled(i, 0.25)]


def test_policy_keys_default_to_the_embedding_and_override_per_task() -> None:
    policy = PolicyConfig.model_validate({"tasks": [{"match": "support*",
                                                     "text_judge": "teacher",
                                                     "text_judge_rate": 0.5}]})
    assert policy.for_task("orders").text_judge == "embedding"
    support = policy.for_task("support-replies")
    assert (support.text_judge, support.text_judge_rate) == ("teacher", 0.5)
    with pytest.raises(ValueError):
        PolicyConfig.model_validate({"text_judge": "gpt"})
    with pytest.raises(ValueError):
        PolicyConfig.model_validate({"text_judge_rate": 1.5})


def test_the_judge_model_must_be_configured() -> None:
    model = {"name": "gpt-test", "base_url": "http://127.0.0.1:9/v1"}
    with pytest.raises(ConfigError, match="text_judge_model 'judge' is not a configured model"):
        parse_config({"models": [model], "policy": {"text_judge_model": "judge"}})
    cfg = parse_config({"models": [model], "policy": {"text_judge_model": "gpt-test"}})
    assert cfg.policy.text_judge_model == "gpt-test"
