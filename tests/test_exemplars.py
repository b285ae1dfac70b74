"""Worked examples: the nearest training exchanges, asked before the request (gateway/exemplars.py).

The same examples at training (`Prepared.for_candidate`), at the held-out gate
(`ExemplarStudent`) and in the gateway (`StudentAsTrained`, from the student's slimgate.json),
in that order with the copy slots; a continuation only from a run asked the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from distill.candidates import (
    ExemplarStudent,
    _as_served,
    exemplar_bank,
    prepare,
    same_shape,
)
from distill.curate import Curated, Example
from distill.warm_start import warm_start
from gateway.config import CandidateConfig
from gateway.copy_slots import CopySlots
from gateway.exemplars import FILE, Exemplars, last_user_text
from gateway.registry import META, Registry
from gateway.store.catalog import StudentRecord
from gateway.students import StudentAsTrained
from policies.code_text import code_shape

SYSTEM = {"role": "system", "content": "Answer with one SQL query over t(city, food)."}
SHOTS = [("arabic food in palo alto", "SELECT * FROM t WHERE food = 'arabic'"),
         ("a good french place in the bay area", "SELECT * FROM t WHERE food = 'french'"),
         ("how many cities are there", "SELECT COUNT(city) FROM t")]
PRETRAINED = CandidateConfig(model="/models/smollm2", params=134_515_008, context=8192,
                             method="lora")
SCRATCH = CandidateConfig(model="scratch:tiny", params=2_000_000, context=512, method="full")


class Echo:
    """A student backend that records what it was asked and answers `reply`."""

    name = "echo"

    def __init__(self, reply: str) -> None:
        self.seen: list[dict[str, Any]] = []
        self.reply = reply

    async def complete(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        self.seen.append(body)
        return {"choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": self.reply}}]}

    async def aclose(self) -> None:
        pass


def ask(text: str) -> dict[str, Any]:
    return {"messages": [SYSTEM, {"role": "user", "content": text}]}


def test_the_nearest_exchanges_come_first_never_the_request_itself() -> None:
    bank = Exemplars(SHOTS, k=2)
    assert bank.nearest("where is arabic food in mountain view") == [0, 1]
    assert bank.nearest("how many cities serve french food")[0] in (1, 2)
    assert 2 not in bank.nearest("how many cities are there")  # never itself
    # equal scores keep the bank's order, so training and serving pick the same
    tied = Exemplars([("red car", "a"), ("red bus", "b"), ("red van", "c")], k=2)
    assert tied.nearest("red") == [0, 1]
    assert bank.nearest("zzz qqq") == []  # nothing shared: nothing shown


def test_examples_go_before_the_last_user_turn_nearest_last_and_the_request_is_not_changed(
) -> None:
    bank = Exemplars(SHOTS, k=2)
    request = ask("arabic food in san jose")
    asked = bank.add_to(request)
    assert request == ask("arabic food in san jose")  # a copy
    roles = [m["role"] for m in asked["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert asked["messages"][3:5] == [{"role": "user", "content": SHOTS[0][0]},
                                      {"role": "assistant", "content": SHOTS[0][1]}]
    assert asked["messages"][-1] == request["messages"][-1]
    # no user turn in text, or k = 0: asked as it is
    assert bank.add_to({"messages": [SYSTEM]}) == {"messages": [SYSTEM]}
    assert Exemplars(SHOTS, k=0).add_to(request) is request
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                       {"type": "text", "text": "b"}]}]}
    assert last_user_text(parts["messages"]) == "a\nb"


def test_the_bank_survives_its_file_and_refuses_what_is_malformed(tmp_path: Path) -> None:
    bank = Exemplars(SHOTS, k=2)
    bank.save(tmp_path)
    again = Exemplars.load(tmp_path)
    assert again is not None and again.shots == bank.shots and again.k == 2
    assert Exemplars.load(tmp_path / "elsewhere") is None
    (tmp_path / FILE).write_text("{not json")
    assert Exemplars.load(tmp_path) is None
    for bad in (None, [], {"k": 0, "shots": [["a", "b"]]}, {"k": 2, "shots": "x"},
                {"k": 2, "shots": [["only one"]]}, {"k": "2", "shots": [["a", "b"]]}):
        assert Exemplars.from_dict(bad) is None


def sql_example(i: int, question: str, sql: str) -> Example:
    return Example(request_id=f"r{i}", seq=i, key=f"{i:08x}", tools=None, response_format=None,
                   messages=[SYSTEM, {"role": "user", "content": question}],
                   answer={"role": "assistant", "content": sql})


def sql_task(n: int = 24) -> Curated:
    foods = ["arabic", "french", "thai", "indian"]
    train = [sql_example(i, f"{foods[i % 4]} food number {i}",
                         f"SELECT name FROM t WHERE food = '{foods[i % 4]}' LIMIT {i}")
             for i in range(n)]
    return Curated(train=train, heldout=[sql_example(99, "thai food number 7",
                                                     "SELECT name FROM t WHERE food = 'thai'")])


def test_a_pretrained_candidate_learns_written_answers_with_worked_examples_a_scratch_one_not(
) -> None:
    prep = prepare("generic", sql_task(), 100)
    assert prep.shape == "code"
    asked = prep.for_candidate(PRETRAINED, 0.9, exemplars=2)
    assert asked.exemplars is not None and len(asked.exemplars) == 24
    for ex, raw in zip(asked.train, prep.raw_train, strict=True):
        turns = ex.messages[1:-1]
        assert len(turns) == 4 and ex.messages[-1] == raw.messages[-1]
        shown = [t["content"] for t in turns if t["role"] == "user"]
        assert raw.messages[-1]["content"] not in shown  # never its own answer
    # the nearest of "thai food number 6" are thai ones
    sixth = asked.train[6].messages
    assert all("thai" in m["content"] for m in sixth[1:-1])
    assert prep.for_candidate(SCRATCH, 0.9, exemplars=2).exemplars is None
    assert prep.for_candidate(PRETRAINED, 0.9, exemplars=0).exemplars is None


def test_examples_are_given_only_where_the_nearest_one_shows_the_answer_s_shape() -> None:
    assert code_shape("SELECT a FROM t WHERE b = 'x' AND c > 3;") == code_shape(
        "select a from t where b = 'yy' and c > 4.5")
    assert code_shape("SELECT a FROM t") != code_shape("SELECT COUNT(a) FROM t")
    # a new column and table in every answer (as WikiSQL's tables): the example shows nothing
    wide = [sql_example(i, f"thai food number {i}", f"SELECT c{i} FROM t{i % 5}")
            for i in range(40)]
    prep = prepare("generic", Curated(train=wide, heldout=wide[:1]), 100)
    assert prep.shape == "code"
    assert same_shape(Exemplars(
        [(e.messages[-1]["content"], e.answer["content"]) for e in wide], 1)) == 0.0
    assert prep.for_candidate(PRETRAINED, 0.9, exemplars=1).exemplars is None
    # one shape, other values: it shows the shape every time
    assert exemplar_bank(sql_task().train, "code", 1) is not None


def test_tool_calls_labels_and_free_text_get_no_worked_examples() -> None:
    call = {"role": "assistant", "content": None, "tool_calls": [{
        "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    train = [Example(request_id=f"r{i}", seq=i, key=f"{i:08x}", tools=tools,
                     response_format=None, answer=call,
                     messages=[{"role": "user", "content": f"do it {i}"}]) for i in range(24)]
    prep = prepare("tool_call", Curated(train=train, heldout=train[:1]), 100)
    assert prep.for_candidate(PRETRAINED, 0.9, exemplars=2).exemplars is None
    labels = [sql_example(i, f"question {i}", ["yes", "no"][i % 2]) for i in range(24)]
    prep = prepare("label", Curated(train=labels, heldout=labels[:1]), 100)
    assert prep.shape == "label"
    assert prep.for_candidate(PRETRAINED, 0.9, exemplars=2).exemplars is None
    # a reply is another conversation's text: not shown to this one
    replies = [sql_example(i, f"my parcel {i} is late", f"Sorry to hear that, we will check "
                           f"parcel {i} and write back within {i % 3 + 1} days.")
               for i in range(24)]
    prep = prepare("text", Curated(train=replies, heldout=replies[:1]), 100)
    assert prep.shape == "text"
    assert prep.for_candidate(PRETRAINED, 0.9, exemplars=2).exemplars is None


class Recorder:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def generate(self, requests: list[dict[str, Any]], max_new_tokens: int = 256) -> list[Any]:
        self.seen += requests
        return []


def test_the_gate_asks_the_student_with_the_examples_it_was_trained_with() -> None:
    asked = prepare("generic", sql_task(), 100).for_candidate(PRETRAINED, 0.9, exemplars=2)
    inner = Recorder()
    served = _as_served(inner, asked)
    assert isinstance(served, ExemplarStudent)
    served.generate([ask("thai food please")])
    assert len(inner.seen[0]["messages"]) == 6
    assert all("thai" in m["content"] for m in inner.seen[0]["messages"][1:-1])


async def test_the_gateway_adds_the_examples_after_pii_and_before_the_copy_slots() -> None:
    inner = Echo(reply="SELECT * FROM t WHERE food = '<V1>'")
    shots = Exemplars([("arabic food near jane.doe@example.com", "SELECT 1"),
                       ("a french place", "SELECT 2")], k=1)
    from gateway.privacy.scrub import ScrubConfig

    student = StudentAsTrained(inner, ScrubConfig(),  # type: ignore[arg-type]
                               CopySlots(gazetteer=["arabic"]), shots)
    resp = await student.complete("chat/completions",
                                  ask("arabic food for ann.lee@example.com"))
    sent = inner.seen[0]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"].startswith("<V1> food")  # the slots saw the worked example
    assert "ann.lee" not in json.dumps(sent) and "<EMAIL_1>" in sent[-1]["content"]
    assert resp["choices"][0]["message"]["content"] == "SELECT * FROM t WHERE food = 'arabic'"


async def test_the_pool_serves_a_student_with_the_examples_in_its_slimgate_json(
    tmp_path: Path,
) -> None:
    import aiohttp

    from gateway.config import parse_config
    from gateway.students import StudentPool

    cfg = parse_config({"distill": {"students_dir": str(tmp_path), "scrub_kinds": []}})
    version = tmp_path / "t-sql" / "v1"
    version.mkdir(parents=True)
    (version / META).write_text(json.dumps({"kind": "generative", "copy_slots": {
        "enabled": False}, "exemplars": {"k": 1, "exchanges": len(SHOTS)}}))
    Exemplars(SHOTS, k=1).save(version)
    inner = Echo(reply="SELECT 1")
    async with aiohttp.ClientSession() as session:
        pool = StudentPool(cfg, session, factory=lambda task, v: inner)  # type: ignore[arg-type]
        student = pool.get("t-sql", 1)
        assert student is not None
        await student.complete("chat/completions", ask("arabic food in san jose"))
    assert [m["content"] for m in inner.seen[0]["messages"][1:3]] == list(SHOTS[0])


@pytest.mark.parametrize(("trained_k", "asked_k", "taken"), [(2, 2, True), (0, 2, False),
                                                            (2, 0, False), (0, 0, True)])
def test_a_run_goes_on_only_from_an_adapter_asked_with_as_many_examples(
    tmp_path: Path, trained_k: int, asked_k: int, taken: bool,
) -> None:
    reg = Registry(tmp_path)
    path = reg.version_dir("t1", 1)
    path.mkdir(parents=True)
    meta: dict[str, Any] = {"copy_slots": {"enabled": False}}
    if trained_k:
        meta["exemplars"] = {"k": trained_k, "exchanges": len(SHOTS)}
    (path / META).write_text(json.dumps(meta))
    (path / "adapter_config.json").write_text("{}")
    record = StudentRecord(task="t1", version=1, path=reg.relative(path),
                           base_model="/models/smollm2", status="failed",
                           metrics={"student_kind": "generative", "heldout_percent": 15})
    found = warm_start([record], reg, base_model="/models/smollm2", slots=False,
                       heldout_percent=15, exemplars=asked_k)
    assert (found is not None) == taken


def test_the_bank_is_built_once_for_the_plan_and_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import distill.candidates as candidates

    built: list[int] = []
    real = candidates.exemplar_bank
    monkeypatch.setattr(candidates, "exemplar_bank",
                        lambda train, shape, k: built.append(k) or real(train, shape, k))
    prep = prepare("generic", sql_task(), 100)
    first = prep.for_candidate(PRETRAINED, 0.9, exemplars=1)  # S4's plan
    again = prep.for_candidate(PRETRAINED, 0.9, exemplars=1)  # the run it plans
    assert built == [1] and first.exemplars is again.exemplars is not None
