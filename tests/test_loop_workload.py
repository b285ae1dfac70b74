"""The loop benchmark's workload generator and answer checks (bench/loop_workload.py,
bench/loop_check.py): five task types of the right shape, each variant's repetition, gold
answers that honour their own contracts, and a broken answer that is caught."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.agent_data import Case, DataMissing, Domain, Tool  # noqa: E402
from bench.loop_check import matches_gold, violation  # noqa: E402
from bench.loop_workload import TYPES, Item, Sources, pools, repetition, schedule, traces  # noqa: E402
from gateway.fingerprint import request_key  # noqa: E402
from gateway.offline.replay_teacher import ReplayTeacher  # noqa: E402

INTENTS = ["PlayMusic", "GetWeather", "RateBook"]
SNIPS_CHECKOUT = Path("/work/.mirror/snipsco+nlu-benchmark/repo")


def stand_in() -> Sources:
    """A tiny made-up stand-in for SNIPS, one agent domain and a QA set."""
    snips = [(INTENTS[n % 3], f"request number {n} for item{n}", {"object_name": f"item{n}"})
             for n in range(90)]
    tools = [Tool("get_order", "Look an order up.", ["order_id"]),
             Tool("refund", "Refund items.", ["order_id", "item_ids", "amount"])]
    cases = [Case(f"please refund order #{n}",
                  [("refund", {"order_id": f"#{n}", "item_ids": [str(n)], "amount": n + 0.5})])
             for n in range(20)]
    cases += [Case(f"where is order #{n}?", [("get_order", {"order_id": f"#{n}"})])
              for n in range(20, 30)]
    cases.append(Case("a case without a ground-truth call", []))
    return Sources(snips, [Domain("shop", "You are a shop's agent.", tools, cases)],
                   [(f"Who won match {n}?", f"Team {n % 7} won it") for n in range(40)])


def test_five_task_types_of_their_own_shape_with_valid_gold_answers() -> None:
    by_type = pools(stand_in())
    assert {k for k, v in by_type.items() if v} == set(TYPES)
    assert [len(by_type[t]) for t in TYPES] == [30, 30, 30, 30, 40]
    for t, items in by_type.items():
        systems = {i.request["messages"][0]["content"] for i in items}
        assert len(systems) == 1, t  # one instruction per type: one task each
        for it in items:
            assert violation(it.request, it.answer) is None, (t, it.answer)
            assert matches_gold(it.answer, it.answer)
    assert all(i.answer["tool_calls"] for i in by_type["snips_tools"] + by_type["agent_tools"])
    assert {i.answer["content"] for i in by_type["snips_label"]} <= set(INTENTS)
    fmt = by_type["snips_json"][0].request["response_format"]
    assert fmt["type"] == "json_schema" and "object_name" in fmt["json_schema"]["schema"][
        "properties"]
    texts = [i.request["messages"][1]["content"] for t in ("snips_tools", "snips_label",
                                                          "snips_json") for i in by_type[t]]
    assert len(texts) == len(set(texts))  # no utterance serves two types


def test_repeated_variant_recurs_and_unique_variant_does_not() -> None:
    by_type = pools(stand_in())
    repeated = schedule(by_type, "repeated", 2000, distinct=10, seed=1)
    unique = schedule(by_type, "unique", 100, seed=1)
    shares = Counter(i.kind for i in repeated)
    assert set(shares) == set(TYPES) and min(shares.values()) > 300
    assert all(len({request_key(i.request) for i in repeated if i.kind == t}) <= 10
               for t in TYPES)
    assert repetition(repeated)["all"] > 0.95
    # the most frequent request of a type is asked far more often than its 10th
    counts = Counter(request_key(i.request) for i in repeated if i.kind == "snips_tools")
    top = counts.most_common()
    assert top[0][1] > 4 * top[-1][1]
    assert repetition(unique)["all"] == 0.0


def test_teacher_replays_the_gold_answer_of_every_scheduled_request(tmp_path: Path) -> None:
    items = schedule(pools(stand_in()), "repeated", 300, distinct=10)
    lines = traces(items, "m")
    assert len(lines) == len({request_key(i.request) for i in items})
    path = tmp_path / "traces.jsonl"
    path.write_bytes(b"".join(orjson.dumps(t) + b"\n" for t in lines))
    teacher = ReplayTeacher.from_jsonl(path)
    for it in items[:50]:
        answer = teacher.answer_for({"model": "m", **it.request})
        assert answer is not None and answer["choices"][0]["message"] == it.answer


@pytest.mark.parametrize(("kind", "message", "why"), [
    ("snips_tools", {"tool_calls": [{"function": {"name": "launch", "arguments": "{}"}}]},
     "unknown tool"),
    ("snips_tools", {"tool_calls": [{"function": {"name": "play_music",
                                                  "arguments": '{"color": "red"}'}}]},
     "Additional properties"),
    ("agent_tools", {"tool_calls": [{"function": {"name": "refund",
                                                  "arguments": '{"order_id": 7}'}}]},
     "is not of type"),
    ("snips_json", {"content": "{not json"}, "not a JSON object"),
    ("snips_json", {"content": json.dumps({"object_name": 3})}, "is not of type"),
])
def test_an_answer_breaking_its_contract_is_caught(kind: str, message: dict[str, object],
                                                    why: str) -> None:
    item: Item = pools(stand_in())[kind][0]
    problem = violation(item.request, message)
    assert problem is not None and why in problem
    assert not matches_gold(message, item.answer)


def test_public_data_builds_every_type_with_valid_gold_answers() -> None:
    from bench.agent_data import freshqa, load_all
    from bench.snips_workload import utterances

    if not SNIPS_CHECKOUT.exists():
        pytest.skip(f"no SNIPS checkout at {SNIPS_CHECKOUT}")
    try:
        _, tau2, dojo = load_all()
    except DataMissing as e:
        pytest.skip(str(e))
    by_type = pools(Sources(utterances(SNIPS_CHECKOUT, "train_full"), [*tau2, *dojo], freshqa()))
    assert min(len(v) for v in by_type.values()) >= 200
    bad = [(t, violation(i.request, i.answer)) for t, v in by_type.items() for i in v
           if violation(i.request, i.answer)]
    assert bad == []
    assert repetition(schedule(by_type, "repeated", 3000))["all"] > 0.6
    assert repetition(schedule(by_type, "unique", 3000))["snips_tools"] < 0.01


def test_the_report_tells_memory_answers_and_the_memorys_stages_apart(
        capsys: pytest.CaptureFixture[str]) -> None:
    from bench.loop_report import Sent, print_table, summarize

    sent = [Sent(i, "snips_label", at=float(i), backend="student" if i % 2 else "teacher",
                 task="t-1", key=f"k{i % 3}") for i in range(10)]
    snap = {"tasks": [{"id": "t-1", "label": "intents", "kind": "label", "stage": "observe",
                       "step": 0, "created_at": 100.0}],
            "students": [], "changes": [], "request_task": {},
            "memory_changes": [{"at": 130.0, "task": "t-1", "from_stage": "shadow",
                                "to_stage": "canary", "to_step": 0, "reason": "r"}],
            "from_memory": {"lb-1", "lb-3"}}
    summary = summarize(sent, snap, t0=100.0, minutes=1)
    assert summary["tasks"][0]["memory_canary_s"] == 30.0
    assert summary["types"]["snips_label"]["memory_answers"] == 2
    print_table(summary)
    assert "30/-" in capsys.readouterr().out
