"""The GPU path on a CPU: a pretrained candidate (a tiny local Llama) trains a LoRA adapter on
copy-slotted examples, and the adapter student decodes under the request's contract."""

from __future__ import annotations

import json

import pytest

from policies.contract import check_contract
from tests.helpers_students import NOTIFY, SET_LEVEL, TinyLora

pytest.importorskip("llguidance")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_lora_student_with_copy_slots_answers_within_the_contract(tiny_lora: TinyLora) -> None:
    """`tiny_lora`: a tiny local Llama (it stands for Qwen2.5-0.5B-Instruct or SmolLM2 on a
    GPU) and a LoRA adapter trained for 4 steps on `slotted` examples."""
    from distill.student import Student

    assert tiny_lora.method == "lora"
    student = Student.load(tiny_lora.adapter)
    named = {"messages": [{"role": "user", "content": "Set the level for <V1>."}],
             "tools": [SET_LEVEL, NOTIFY], "parallel_tool_calls": False, "max_tokens": 64,
             "tool_choice": {"type": "function", "function": {"name": "set_level"}}}
    none = {**named, "tool_choice": "none", "max_tokens": 12}
    gen, free = student.generate([named, none])
    # An undertrained adapter still cannot leave the grammar: one call, an allowed level
    # (or the request's own placeholder), and the answer ends there.
    assert gen.finish_reason == "tool_calls", gen.text
    (call,) = gen.message["tool_calls"]
    assert call["function"]["name"] == "set_level"
    assert json.loads(call["function"]["arguments"])["level"] in ("low", "high", "<V1>")
    if json.loads(call["function"]["arguments"])["level"] != "<V1>":
        assert check_contract(named, gen.message) is None
    assert "tool_calls" not in free.message  # tool_choice "none": free text, unconstrained
