"""The miss breakdown of bench/toolcall_misses.py: a tool-call disagreement named by cause."""

from __future__ import annotations

import json
from typing import Any

from bench.miss_causes import miss_causes, slot_fate


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function",
         "function": {"name": name, "arguments": json.dumps(args)}}]}


def test_a_date_cut_at_its_hyphens_and_shifted_is_filed_as_split() -> None:
    teacher = call("schedule", date="2026-06-20", time="11:30",
                   attendees=["Eli", "Mateo", "Omar"])
    student = call("schedule", date="2026", time="06", attendees=["20", "11:30", "Omar"])
    assert miss_causes(student, teacher)[0] == "adjacent values split"


def test_each_cause_is_named() -> None:
    t = call("get_weather", city="Walden", country="Russia")
    assert miss_causes(call("play_music", city="Walden"), t) == ["wrong tool"]
    assert miss_causes(call("get_weather", city="Walden Russia"), t)[0] == \
        "adjacent values merged"
    assert miss_causes(call("get_weather", city="walden", country="Russia"), t) == ["case"]
    assert miss_causes(call("get_weather", city="Walden"), t) == ["value left out"]
    lists = call("invite", who=["Eli", "Omar"])
    assert miss_causes(call("invite", who=["Eli"]), lists) == ["list items missing or extra"]
    assert miss_causes(call("invite", who=["Eli, Omar"]), lists)[:2] == [
        "list items missing or extra", "adjacent values merged"]


def test_the_proposers_fate_of_a_copied_value() -> None:
    text = "Weather in Walden Russia on 12/26/2018"
    assert slot_fate(text, "Walden", ["Walden Russia"]) == "merged"
    assert slot_fate(text, "12/26/2018", ["12", "26", "2018"]) == "cut"
    assert slot_fate(text, "Walden", ["Walden"]) == "whole"
    assert slot_fate(text, "Walden", []) == "not proposed"
