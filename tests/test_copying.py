"""Copy slots on the training side: coverage per task, kind planning, and a tiny student that
copies values it has never seen."""

from __future__ import annotations

import json
import random
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from distill.copying import coverage, delexicalize, fit_copy_slots
from distill.curate import Curated, curate
from distill.kind_plan import answer_shape, plan_kinds
from gateway.offline.workload import generate, to_traces
from gateway.privacy.scrub import ScrubConfig

COVERAGE_FLOOR = 0.9  # every copied value of a demo task is an id, date, number or known value


def curated_task(task: str, n: int = 300) -> Curated:
    rows = [{"request_id": f"{task}-{i}", "seq": i, "status": 200, "backend": "teacher", **t}
            for i, t in enumerate(to_traces(generate(n, seed=3, kinds=[task])))]
    return curate(rows, heldout_percent=20, scrub=ScrubConfig())


@pytest.mark.parametrize("task", ["travel_tools", "order_extract", "intent_router"])
def test_the_proposer_captures_the_copied_values_of_each_structured_demo_task(task: str) -> None:
    data = curated_task(task)
    slots = fit_copy_slots(data.train)
    assert slots is not None
    held = coverage(data.heldout, slots)
    print(f"{task}: copy-slot coverage on held-out {held}")
    assert held["copied"] > 20 and held["share"] >= COVERAGE_FLOOR


@pytest.mark.parametrize("task", ["ticket_triage", "sentiment", "reply_writer"])
def test_tasks_whose_answers_copy_nothing_get_no_copy_slots(task: str) -> None:
    assert fit_copy_slots(curated_task(task, 120).train) is None


def test_training_answers_carry_the_placeholders_the_request_has() -> None:
    data = curated_task("order_extract", 60)
    slots = fit_copy_slots(data.train)
    assert slots is not None
    ex = delexicalize(data.train[0], slots)
    answer = json.loads(ex.answer["content"])
    user = ex.messages[-1]["content"]
    assert answer["order_id"].startswith("<V") and answer["order_id"] in user
    assert isinstance(answer["quantity"], str) and "content/quantity" in slots.numeric_fields


@pytest.fixture
def fake_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """An encoder kind that says it can express anything but free text."""
    module = types.ModuleType("distill.encoder_student")

    def can_express(examples: list[Any]) -> tuple[bool, str]:
        texts = [str(e.answer.get("content") or "") for e in examples]
        ok = all(len(t.split()) <= 3 or t.startswith("{") for t in texts)
        return ok, "labels and spans" if ok else "free text"

    module.can_express = can_express  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "distill.encoder_student", module)


def test_kind_selection_tries_the_encoder_first_for_labels_and_only_generative_for_text(
    fake_encoder: None
) -> None:
    label = curated_task("ticket_triage", 80)
    plan = plan_kinds(answer_shape("label", None), label.train, None, encoder=True)
    assert [(c.kind, c.reason) for c in plan] == [("encoder", None), ("generative", None)]
    text = curated_task("reply_writer", 40)
    plan = plan_kinds(answer_shape("text", None), text.train, None, encoder=True)
    assert plan[0].kind == "encoder" and "free-text" in (plan[0].reason or "")
    assert plan[1] == plan[1].__class__("generative", None)


def test_slots_short_of_the_gate_rule_out_scratch_and_give_pretrained_the_raw_request(
) -> None:
    from distill.candidates import prepare
    from gateway.config import CandidateConfig

    prep = prepare("json", curated_task("order_extract", 80), 500, kinds=["generative"])
    assert prep.slots is not None
    scratch = CandidateConfig(model="scratch:tiny", params=2_000_000, context=1024)
    pretrained = CandidateConfig(model="/models/qwen", params=494_000_000, context=32768)
    assert prep.too_low_for(scratch, 0.9) is None  # every copied value captured
    prep.slots.coverage["heldout"] = {"share": 0.81, "answers_whole": 0.55}
    reason = prep.too_low_for(scratch, 0.9)
    assert reason is not None and "0.81" in reason and "0.55" in reason and "0.90" in reason
    assert prep.too_low_for(pretrained, 0.9) is None  # it can copy by itself
    raw = prep.for_candidate(pretrained, 0.9)  # ... from the raw request, slots set aside
    assert raw.slots is None and raw.train == prep.raw_train != prep.train
    assert raw.slots_meta()["enabled"] is False and "0.55" in raw.slots_meta()["reason"]
    assert prep.for_candidate(scratch, 0.9) is prep  # scratch keeps the slots (ruled out above)
    prep.slots.coverage["heldout"] = {"share": 0.99, "answers_whole": 0.97}
    assert prep.for_candidate(pretrained, 0.9) is prep  # slots that reach the gate stay


def lookup_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """A tiny extraction task: an order id and a date, copied from a one-line request."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        oid = f"{rng.choice('ABKW')}{rng.randint(10000, 99999)}"
        day = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        text = rng.choice(["Look up order {o} placed on {d}.", "Order {o} from {d}: status?",
                           "Where is {o}? I ordered on {d}."]).format(o=oid, d=day)
        request = {"model": "m", "response_format": {"type": "json_object"},
                   "messages": [{"role": "system", "content": "Extract order and date as JSON."},
                                {"role": "user", "content": text}]}
        answer = {"role": "assistant", "content": json.dumps({"order": oid, "date": day})}
        rows.append({"request_id": f"r{seed}-{i}", "seq": i, "status": 200, "backend": "teacher",
                     "request": request, "response": {"choices": [
                         {"index": 0, "message": answer, "finish_reason": "stop"}]}})
    return rows


def test_a_tiny_student_trained_for_seconds_copies_unseen_ids_and_dates(
    tmp_path: Path, one_torch_thread: None
) -> None:
    from distill.candidates import fit_generative, prepare
    from gateway.config import parse_config

    # 120 steps end the training, never the clock: a loaded machine gets the same student
    cfg = parse_config({"distill": {"training": {"time_budget_s": 3600, "max_steps": 120,
                                                 "max_seq_len": 64, "batch_size": 16}}})
    data = curate(lookup_rows(240, seed=1), heldout_percent=1)
    heldout = curate(lookup_rows(40, seed=99), heldout_percent=50)  # fresh ids and dates
    unseen = heldout.train + heldout.heldout
    prep = prepare("json", data, 500, kinds=["generative"])
    assert prep.coverage == 1.0 and prep.slots is not None
    policy = cfg.policy.for_task("lookup", "lookup")
    report, ev = fit_generative(cfg, prep, unseen, "json", policy,
                                cfg.distill.candidates[0], tmp_path / "s", max_new=32,
                                progress=False)
    seen = {json.loads(ex.answer["content"])["order"] for ex in data.train}
    assert not seen & {json.loads(ex.answer["content"])["order"] for ex in unseen}
    print(f"trained {report['steps']} steps in {report['seconds']} s: {ev.summary}")
    assert ev.summary["agreement"] >= 0.9


def test_a_date_followed_by_a_time_goes_through_the_copy_slots_whole() -> None:
    """Request text → slots → the answer a student learnt → restored arguments: the case
    where a student answered date "2026", time "06", attendees ["20", "11:30", "Omar"]."""
    from distill.curate import Example
    from gateway.copy_slots import Slots

    def scheduling(i: int, date: str, time: str, who: list[str]) -> Example:
        text = f"Set up the sync for {date} {time} with {', '.join(who[:-1])} and {who[-1]}."
        args = {"date": date, "time": time, "attendees": who}
        return Example(request_id=f"r{i}", seq=i, key=f"{i:08x}", tools=None,
                       response_format=None,
                       messages=[{"role": "system", "content": "You schedule meetings."},
                                 {"role": "user", "content": text}],
                       answer={"role": "assistant", "content": None, "tool_calls": [{
                           "id": "c", "type": "function", "function": {
                               "name": "schedule", "arguments": json.dumps(args)}}]})

    train = [scheduling(i, f"2026-05-{10 + i}", t, ["Eli", "Mateo", "Omar"])
             for i, t in enumerate(["11:30", "09:00", "11:30", "14:15"])]
    slots = fit_copy_slots(train)
    assert slots is not None and "11:30" in slots.gazetteer
    learnt = delexicalize(train[0], slots).answer  # what the student is taught to write
    new = scheduling(9, "2026-06-20", "11:30", ["Eli", "Mateo", "Omar"])
    s = Slots(slots, new.request())
    assert s.delex_request(new.request())["messages"][1]["content"] == \
        "Set up the sync for <V1> <V2> with <V3>, <V4> and <V5>."
    restored = s.restore_message(learnt)
    assert json.loads(restored["tool_calls"][0]["function"]["arguments"]) == {
        "date": "2026-06-20", "time": "11:30", "attendees": ["Eli", "Mateo", "Omar"]}


def test_the_encoder_learns_and_is_judged_on_the_requests_own_words(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """A `<V3>` hides whether a value names a city or an artist, and the encoder copies by
    pointing anyway: it trains and answers on the raw request, never through copy slots."""
    import distill.encoder_student as enc
    from distill.candidates import fit_encoder, prepare
    from distill.curate import Example
    from distill.student import Generation
    from gateway.config import Config

    def ask(i: int, city: str) -> Example:
        call = {"id": "c", "type": "function", "function": {
            "name": "get_weather", "arguments": json.dumps({"city": city})}}
        return Example(request_id=f"r{i}", seq=i, key=f"{i:08x}", tools=None,
                       response_format=None,
                       messages=[{"role": "user", "content": f"Weather in {city} please"}],
                       answer={"role": "assistant", "content": None, "tool_calls": [call]})

    cities = ["Oslo", "Lima", "Kyiv", "Pune", "Doha", "Bern", "Riga", "Baku"]
    prep = prepare("tool_call", Curated(train=[ask(i, c) for i, c in enumerate(cities)],
                                        heldout=[ask(20, "Quito")]), 100, encoder=True)
    assert prep.slots is not None  # the task has copy slots; the encoder does not use them
    seen: list[str] = []

    class Pointer:
        def generate(self, requests: list[dict[str, Any]], max_new_tokens: int = 256
                     ) -> list[Generation]:
            seen.extend(r["messages"][-1]["content"] for r in requests)
            return [Generation(ask(0, "Quito").answer, "tool_calls", 1, 1, "") for _ in requests]

    def train(examples: list[Any], out_dir: Any, **_: Any) -> dict[str, Any]:
        seen.extend(e.messages[-1]["content"] for e in examples)
        return {"kind": "encoder"}

    monkeypatch.setattr(enc, "train_encoder", train)
    monkeypatch.setattr(enc.EncoderStudent, "load", classmethod(lambda cls, path: Pointer()))
    cfg = Config()
    _, ev = fit_encoder(cfg, prep, [ask(20, "Quito")], "tool_call", cfg.policy.for_task("t"),
                        tmp_path, max_new=64)
    assert seen[:2] == ["Weather in Oslo please", "Weather in Lima please"]
    assert seen[-1] == "Weather in Quito please" and ev.summary["n"] == 1
