"""A held-out judgement that can no longer reach the bar stops generating (distill/evaluate.py).

Only a failure is decided early, from looks at 32, 64, ... answers in an order of the
requests' own hashes, so a student that passes the whole set is never stopped by the order its
examples came in, and a judgement with a teacher judge is never cut.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from distill.curate import Example
from distill.evaluate import FIRST_LOOK, evaluate


@dataclass
class Gen:
    message: dict[str, Any]
    completion_tokens: int = 1


class Labeller:
    """Answers 'yes' except to the requests in `wrong`; counts what it was asked."""

    def __init__(self, wrong: set[str]) -> None:
        self.wrong = wrong
        self.asked: list[str] = []

    def generate(self, requests: list[dict[str, Any]], max_new_tokens: int = 256) -> list[Gen]:
        out = []
        for r in requests:
            text = r["messages"][-1]["content"]
            self.asked.append(text)
            out.append(Gen({"role": "assistant", "content": "no" if text in self.wrong
                            else "yes"}))
        return out


def example(i: int) -> Example:
    text = f"is request {i} fine?"
    answer = {"role": "assistant", "content": "yes"}
    return Example(request_id=f"r{i}", seq=i, key=hashlib.sha256(text.encode()).hexdigest(),
                   messages=[{"role": "user", "content": text}], tools=None,
                   response_format=None, answer=answer, refs=[(answer, 1)])


def judge(student: Labeller, examples: list[Example], **kw: Any) -> dict[str, Any]:
    return evaluate(student, examples, "label", confidence=0.95, text_threshold=0.85,
                    **kw).summary


def test_a_student_that_cannot_reach_the_bar_stops_at_the_first_look() -> None:
    examples = [example(i) for i in range(200)]
    student = Labeller({ex.messages[-1]["content"] for ex in examples})  # always wrong
    s = judge(student, examples, stop_below=0.9)
    assert len(student.asked) == FIRST_LOOK and s["n"] == FIRST_LOOK
    assert s["stopped_early"]["after"] == FIRST_LOOK and s["stopped_early"]["of"] == 200
    assert s["stopped_early"]["upper"] < 0.9 and s["upper"] < 0.9 and s["agree"] == 0
    # without a bar every example is answered
    student = Labeller(student.wrong)
    s = judge(student, examples)
    assert len(student.asked) == 200 and "stopped_early" not in s


def test_a_student_that_passes_is_never_stopped_by_the_order_its_examples_came_in() -> None:
    examples = [example(i) for i in range(400)]
    # its only misses are the first 20 examples as they came: judged in that order, the first
    # look (12 of 32) would have stopped it
    student = Labeller({ex.messages[-1]["content"] for ex in examples[:20]})
    s = judge(student, examples, stop_below=0.9)
    assert len(student.asked) == 400 and "stopped_early" not in s
    assert s["agree"] == 380 and s["lower"] >= 0.9


def test_a_judgement_near_the_bar_goes_on_and_a_teacher_judged_one_is_never_cut() -> None:
    examples = [example(i) for i in range(100)]
    # 85% right: under the bar in the end, but not out of reach at the early looks
    wrong = {ex.messages[-1]["content"] for ex in sorted(examples, key=lambda e: e.key)[::7]}
    student = Labeller(wrong)
    judge(student, examples, stop_below=0.9)
    assert len(student.asked) == 100

    def teacher(items: list[Any]) -> list[Any]:
        return [None] * len(items)

    student = Labeller({ex.messages[-1]["content"] for ex in examples})
    s = judge(student, examples, stop_below=0.9, text_judge=teacher)
    assert len(student.asked) == 100 and "stopped_early" not in s
