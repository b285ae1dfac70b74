"""The loop adapts to the traffic it gets: repeats are evidence, data is enough when the gate
could pass, and every ready task gets its cheap student before any expensive run.

Stand-in students (a lookup of the teacher's answers) replace training, so these run in
seconds; the evaluation, curation, scheduling and interruption are the product's own.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

import distill.candidates
import distill.pipeline
from distill.curate import MAX_HELDOUT_PERCENT, Curated, curate
from distill.evaluate import Evaluation, evaluate
from distill.passes import cheap_work_waiting, run_distill, soonest_judgeable
from distill.pipeline import TaskOutcome, curate_task, distill_task, why_train
from distill.student import Generation
from distill.train import Interrupted
from gateway.config import Config, parse_config
from gateway.embed import SharedEmbedder
from gateway.offline.workload import generate, to_traces
from gateway.store.catalog import TaskRecord, list_students, upsert_task
from gateway.store.db import connect
from policies.schedule import (
    MIN_PASS_WAIT_S,
    expensive_win,
    next_pass_wait,
    scratch_after_pretrained,
    seconds_to_judgeable,
    worth_expensive_run,
)
from policies.stats import passable_n


def traces(kind: str, distinct: int, seed: int = 1) -> list[dict[str, Any]]:
    """`distinct` different requests of one workload kind with the teacher's answers."""
    out, seen = [], set()
    for t in to_traces(generate(distinct * 4, seed=seed, kinds=[kind])):
        text = orjson.dumps(t["request"]["messages"])
        if text not in seen:
            seen.add(text)
            out.append(t)
        if len(out) == distinct:
            return out
    raise AssertionError("the workload repeated itself")


def rows_of(traffic: list[dict[str, Any]], task: str | None = None) -> list[dict[str, Any]]:
    return [{"seq": i + 1, "request_id": f"r{i}", "created_at": 0.0, "task": task,
             "status": 200, "finish_reason": "stop", "backend": "teacher", "key_id": None,
             "request": t["request"], "response": t["response"]} for i, t in enumerate(traffic)]


def answered(pairs: list[tuple[str, str]], system: str) -> list[dict[str, Any]]:
    """Rows of (question, the teacher's text answer) under one system prompt."""
    return rows_of([{"request": {"model": "m", "messages": [
                        {"role": "system", "content": system}, {"role": "user", "content": q}]},
                     "response": {"choices": [{"index": 0, "finish_reason": "stop", "message": {
                         "role": "assistant", "content": a}}]}} for q, a in pairs])


def repeated(distinct: list[dict[str, Any]], times: int, seed: int = 0) -> list[dict[str, Any]]:
    traffic = [t for t in distinct for _ in range(times)]
    random.Random(seed).shuffle(traffic)
    return traffic


class Lookup:
    """A stand-in student: the teacher's answer for requests in its table, else `default`."""

    def __init__(self, examples: list[Any], default: str = "neutral") -> None:
        self.table = {orjson.dumps(ex.messages): ex.answer for ex in examples}
        self.default = default

    def generate(self, requests: list[dict[str, Any]], max_new_tokens: int = 256
                 ) -> list[Generation]:
        return [Generation(self.table.get(orjson.dumps(r["messages"]),
                                          {"role": "assistant", "content": self.default}),
                           "stop", 10, 2, "") for r in requests]


def judge(student: Any, curated: Curated) -> Evaluation:
    return evaluate(student, curated.judged, "label", confidence=0.95, text_threshold=0.85)


NEED = passable_n(0.9, 0.95)  # 35


def test_a_task_of_60_requests_repeated_20_times_trains_and_is_judged_on_its_traffic() -> None:
    distinct = traces("sentiment", 60)
    curated = curate(rows_of(repeated(distinct, 20)), heldout_percent=15, min_evidence=NEED)
    assert len(curated.train) + len(curated.heldout) == 60 and curated.requests == 1200
    assert len(curated.heldout) < NEED  # on distinct held-out requests alone: not judgeable
    assert curated.heldout_percent == 15  # the repeats are enough: no more held out
    # every held-out occurrence counts, and every repeat of a trained request
    assert curated.evidence == 20 * len(curated.heldout) + 19 * len(curated.repeated)
    assert curated.evidence >= NEED
    everything = curated.train + curated.heldout
    right = judge(Lookup(everything), curated).summary
    assert right["n"] == curated.evidence and right["distinct"] == 60
    assert right["lower"] >= 0.9  # right on the requests that are all of the traffic: passes
    # A student right only on what it was trained on is judged on the rest too: the held-out
    # requests are ~15% of the traffic and it gets them wrong.
    memo = judge(Lookup(curated.train, default="wrong"), curated).summary
    assert memo["n"] == curated.evidence
    assert memo["agreement"] == pytest.approx(1 - 20 * len(curated.heldout) / curated.evidence)
    assert memo["lower"] < 0.9


def test_a_teacher_that_answers_one_request_two_ways_counts_against_any_student() -> None:
    distinct = traces("sentiment", 40)
    rows = rows_of(repeated(distinct, 5))
    target = rows[0]["request"]
    flipped = 0
    for row in rows[1:]:
        if row["request"] == target:  # the teacher answered it otherwise after the first time
            row["response"] = {**row["response"], "choices": [{
                "index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "mixed"}}]}
            flipped += 1
    curated = curate(rows, heldout_percent=15, min_evidence=NEED)
    summary = judge(Lookup(curated.train + curated.heldout), curated).summary
    assert flipped == 4 and summary["n"] - summary["agree"] == 4


def test_held_out_share_rises_only_where_the_evidence_is_short() -> None:
    unique = curate(rows_of(traces("sentiment", 100)), heldout_percent=15, min_evidence=NEED)
    assert unique.heldout_percent > 15 and unique.evidence >= NEED
    assert len(unique.heldout) == unique.evidence  # no repeats: distinct requests only
    few = curate(rows_of(traces("sentiment", 30)), heldout_percent=15, min_evidence=NEED)
    assert few.heldout_percent == 15 and few.evidence < NEED  # cannot be judged yet: waits
    assert MAX_HELDOUT_PERCENT == 50


def test_a_task_about_to_be_judgeable_is_not_left_a_whole_pass_interval() -> None:
    # 30 of the 35 comparisons after 60 s of traffic: the other 5 in ~10 s at that pace.
    assert seconds_to_judgeable(30, 35, 60, 1000.0, 1060.0, now=1061.0) == pytest.approx(9.0)
    assert next_pass_wait(9.0, 30.0) == MIN_PASS_WAIT_S == 10.0  # never closer than this
    assert next_pass_wait(25.0, 30.0) == 25.0
    assert next_pass_wait(400.0, 30.0) == 30.0  # a slow task: the usual interval
    assert next_pass_wait(None, 30.0) == 30.0
    assert next_pass_wait(2.0, 5.0) == 5.0  # a shorter configured interval still holds
    # No pace to go by: judgeable already, no evidence, one request, or traffic that paused.
    assert seconds_to_judgeable(35, 35, 60, 1000.0, 1060.0, now=1061.0) is None
    assert seconds_to_judgeable(0, 35, 60, 1000.0, 1060.0, now=1061.0) is None
    assert seconds_to_judgeable(1, 35, 1, 1000.0, 1000.0, now=1001.0) is None
    assert seconds_to_judgeable(30, 35, 60, 1000.0, 1060.0, now=1100.0) is None


def test_a_pass_says_when_a_task_short_of_data_should_be_judgeable(
    tmp_path: Path, shared_embedder: SharedEmbedder,
) -> None:
    cfg, con = store(tmp_path)
    task = label_task("t-short")
    add_traffic(con, task, traces("sentiment", 55))  # 55 requests within the last second
    con.execute("UPDATE exchanges SET created_at = created_at - 55 + seq")  # 1/s, until now
    curated = curate_task(con, cfg, task)
    # 28 comparisons within reach (half held out), 35 needed: ~13 s more at this pace.
    assert curated.evidence < NEED and 0 < curated.reach < NEED
    outcomes = run_distill(cfg, progress=False, embedder=shared_embedder)
    # Discovery names the task from its traffic; it lacks judged evidence, not requests.
    [out] = [o for o in outcomes if o.action == "skipped" and "judged evidence" in o.reason]
    soon = soonest_judgeable(outcomes)
    assert soon is not None and soon < cfg.worker.interval_s - 10, soon
    assert next_pass_wait(soon, cfg.worker.interval_s) < cfg.worker.interval_s


def store(tmp_path: Path, **distill_cfg: Any) -> tuple[Config, Any]:
    cfg = parse_config({"store": {"path": str(tmp_path / "s.db")},
                        "distill": {"students_dir": str(tmp_path / "students"),
                                    **distill_cfg},
                        "worker": {"slice_s": 0.001}})
    return cfg, connect(cfg.store.path)


def add_traffic(con: Any, task: TaskRecord, traffic: list[dict[str, Any]], first: int = 0
                ) -> None:
    upsert_task(con, task)
    con.executemany(
        "INSERT INTO exchanges (request_id, created_at, endpoint, model, backend, task, stream, "
        "request, response, status) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [(f"{task.id}-{first + i}", time.time(), "chat/completions", "m", "teacher", task.id, 0,
          orjson.dumps(t["request"]).decode(), orjson.dumps(t["response"]).decode(), 200)
         for i, t in enumerate(traffic)])


def label_task(task_id: str) -> TaskRecord:
    return TaskRecord(id=task_id, label=task_id, kind="label",
                      info={"prompt_tokens_p99": 200, "answer_tokens_p99": 4})


def test_the_worker_trains_a_repeated_task_that_never_reaches_the_old_fixed_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_embedder: SharedEmbedder,
) -> None:
    cfg, con = store(tmp_path)
    task = label_task("t-sentiment")
    add_traffic(con, task, repeated(traces("sentiment", 60), 20))

    def fit_encoder(cfg: Any, prep: Any, judged: Any, *args: Any, **kw: Any) -> Any:
        curated = curate_task(con, cfg, task)
        return {"base_model": "lookup"}, judge(Lookup(curated.train + curated.heldout),
                                                curated)

    monkeypatch.setattr(distill.candidates, "fit_encoder", fit_encoder)
    curated = curate_task(con, cfg, task)
    assert len(curated.train) < 250  # the fixed count this used to wait for
    assert why_train(con, cfg, task, curated) is not None
    outcome = distill_task(con, cfg, task, curated, progress=False, embedder=shared_embedder,
                           encoder=True, phase="cheap")
    assert outcome.passed and outcome.metrics["n"] == curated.evidence
    assert outcome.metrics["repeats_judged"] == len(curated.repeated) > 0


def test_every_ready_task_gets_its_cheap_try_before_any_expensive_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_embedder: SharedEmbedder,
) -> None:
    cfg, con = store(tmp_path, candidates=[{"model": "scratch:tiny", "params": 2_000_000,
                                            "context": 1024}])
    for i, name in enumerate(("t-one", "t-two", "t-three")):
        add_traffic(con, label_task(name), traces("sentiment", 80, seed=i + 1))
    runs: list[tuple[str, str]] = []

    def train_candidate(con: Any, cfg: Any, task: TaskRecord, curated: Any, prep: Any,
                        kind: str, candidate: Any, **kw: Any) -> TaskOutcome:
        runs.append((task.id, kind))
        return TaskOutcome(task.id, task.label, "trained", "stand-in", len(runs), False,
                           {"student_kind": kind, "agreement": 0.5})

    monkeypatch.setattr(distill.pipeline, "train_candidate", train_candidate)
    monkeypatch.setattr("distill.passes.discover_tasks", lambda *a: 0)
    monkeypatch.setattr("distill.candidates.plan_kinds", _both_kinds)
    run_distill(cfg, progress=False, embedder=shared_embedder)
    kinds = [k for _, k in runs]
    assert kinds == ["encoder"] * 3 + ["generative"] * 3  # breadth first
    assert {t for t, _ in runs[:3]} == {"t-one", "t-two", "t-three"}


def _both_kinds(*args: Any, **kw: Any) -> list[Any]:
    from distill.kind_plan import KindChoice

    return [KindChoice("encoder", None), KindChoice("generative", None)]


def test_an_expensive_run_gives_way_when_a_task_becomes_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_embedder: SharedEmbedder,
) -> None:
    cfg, con = store(tmp_path)
    add_traffic(con, label_task("t-slow"), traces("sentiment", 80))
    monkeypatch.setattr("distill.passes.discover_tasks", lambda *a: 0)
    waiting = cheap_work_waiting(con, cfg, shared_embedder, "t-slow", threading.Event())
    time.sleep(0.01)
    assert not waiting()  # nothing else to train
    late = label_task("t-late")
    add_traffic(con, late, traces("ticket_triage", 80), first=1000)
    time.sleep(0.01)
    assert waiting()  # a task is ready: the long run stops for it
    stop = threading.Event()
    stop.set()
    assert cheap_work_waiting(con, cfg, shared_embedder, "t-slow", stop)()  # shutting down


def test_an_interrupted_run_registers_nothing_and_is_owed_next_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_embedder: SharedEmbedder,
) -> None:
    cfg, con = store(tmp_path)
    task = label_task("t-slow")
    add_traffic(con, task, traces("sentiment", 80))

    def fit_generative(*args: Any, interrupt: Any = None, **kw: Any) -> Any:
        raise Interrupted("stopped after 3 steps, 2 s, for other work")

    def fit_encoder(*args: Any, **kw: Any) -> Any:
        n = 40
        return {"base_model": "stand-in"}, Evaluation(
            {"n": n, "agree": 20, "agreement": 0.5, "lower": 0.35, "upper": 0.65})

    monkeypatch.setattr(distill.candidates, "fit_generative", fit_generative)
    monkeypatch.setattr(distill.candidates, "fit_encoder", fit_encoder)
    monkeypatch.setattr("distill.passes.discover_tasks", lambda *a: 0)
    monkeypatch.setattr("distill.candidates.plan_kinds", _both_kinds)
    first = run_distill(cfg, progress=False, embedder=shared_embedder)
    assert [o.action for o in first] == ["trained", "interrupted"]
    assert [s.metrics["student_kind"] for s in list_students(con, "t-slow")] == ["encoder"]
    assert not list((tmp_path / "students").glob("*/.v*.partial"))
    again = run_distill(cfg, progress=False, embedder=shared_embedder)
    assert [o.action for o in again] == ["interrupted"]  # owed: the encoder is not redone


def test_expensive_runs_are_made_only_where_worth_their_minutes() -> None:
    def win(shape: str, copyable: float | None = None, scratch: bool = True) -> float:
        return expensive_win(shape, scratch=scratch, copyable=copyable, last_agreement=None,
                             min_agreement=0.9)

    assert not worth_expensive_run(win("text"))  # facts not in the request: the teacher's
    assert worth_expensive_run(win("text", copyable=0.95))  # templated text (SQL) is tried
    assert worth_expensive_run(win("tool_call")) and worth_expensive_run(win("label"))
    assert worth_expensive_run(win("text", scratch=False))  # a pretrained model may write
    assert win("label") > win("copy_json") > win("tool_call") > win("text")


def test_short_answers_that_are_facts_not_labels_are_free_text_and_stay_with_the_teacher(
) -> None:
    from distill.candidates import prepare

    facts = [(f"Which year did event number {i} happen?", str(1700 + 3 * i)) for i in range(80)]
    curated = curate(answered(facts, "Answer the question in a few words."), heldout_percent=15,
                     min_evidence=NEED)
    prep = prepare("label", curated, 5000, encoder=True)
    assert prep.shape == "text"  # each request its own answer: no label set to learn
    assert not worth_expensive_run(expensive_win(prep.shape, scratch=True,
                                                 copyable=prep.ceiling, last_agreement=None,
                                                 min_agreement=0.9))
    labels = curate(rows_of(traces("sentiment", 80)), heldout_percent=15, min_evidence=NEED)
    assert prepare("label", labels, 5000, encoder=True).shape == "label"


def test_sql_answers_are_code_planned_for_a_scratch_writer_even_behind_a_pretrained_one(
) -> None:
    from distill.candidates import prepare

    cols = ("name", "city", "rating", "food_type")
    pairs = [(f"Which {cols[i % 4]} has place {i}?",
              f"SELECT {cols[i % 4]} FROM restaurant WHERE id = {i}") for i in range(80)]
    curated = curate(answered(pairs, "Write one SQL query."), heldout_percent=15,
                     min_evidence=NEED)
    prep = prepare("text", curated, 5000, encoder=True)
    assert prep.shape == "code"
    assert [(c.kind, c.reason) for c in prep.plan] == [
        ("encoder", "code answers: an encoder cannot write them"), ("generative", None)]
    assert worth_expensive_run(expensive_win("code", scratch=True, copyable=None,
                                             last_agreement=None, min_agreement=0.9))
    assert scratch_after_pretrained("code", None)
    assert not scratch_after_pretrained("text", None)
    prose = [(q, f"The answer to that is place {i}, as listed.") for i, (q, _) in enumerate(pairs)]
    curated = curate(answered(prose, "Answer in a sentence."), heldout_percent=15,
                     min_evidence=NEED)
    assert prepare("text", curated, 5000, encoder=True).shape == "text"


def test_one_declared_json_schema_is_one_task_whatever_fields_each_answer_fills() -> None:
    from distill.discover import discover

    schema = {"type": "json_schema", "json_schema": {"name": "slots", "schema": {
        "type": "object", "properties": {k: {"type": "string"} for k in
                                         ("artist", "track", "city", "day")}}}}
    traffic = []
    for i in range(30):
        for user, answer in ((f"play track{i} by artist{i} now please",
                              {"track": f"track{i}", "artist": f"artist{i}"}),
                             (f"what is the weather in city{i} on day{i}",
                              {"city": f"city{i}", "day": f"day{i}"})):
            traffic.append({"request": {"model": "m", "messages": [
                {"role": "system", "content": "Fill the slots of the user's request as JSON."},
                {"role": "user", "content": user}]},
                "response": {"choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": orjson.dumps(answer).decode()}}]}})
    declared = [{**t, "request": {**t["request"], "response_format": schema}} for t in traffic]
    assert len(discover(rows_of(declared), min_task_examples=10).tasks) == 1
    loose = [{**t, "request": {**t["request"], "response_format": {"type": "json_object"}}}
             for t in traffic]
    assert len(discover(rows_of(loose), min_task_examples=10).tasks) == 2  # no declared contract


def test_a_near_miss_waiting_in_shadow_is_retrained_on_grown_data(tmp_path: Path) -> None:
    from gateway.store.catalog import StudentRecord, add_student, get_task

    cfg, con = store(tmp_path)
    task = label_task("t-wait")
    add_traffic(con, task, traces("sentiment", 80))
    add_student(con, StudentRecord(task="t-wait", version=1, path="t-wait/v1",
                                   base_model="encoder", status="near",
                                   metrics={"train_examples": 30, "n": 35, "agree": 33}))
    con.execute("UPDATE tasks SET stage = 'shadow', student_version = 1, stage_since = 0")
    curated = curate_task(con, cfg, task)
    reason = why_train(con, cfg, get_task(con, "t-wait"), curated)
    assert reason is not None and "grew" in reason  # shadow serves no one: train a successor
    con.execute("UPDATE students SET status = 'passed'")
    assert why_train(con, cfg, get_task(con, "t-wait"), curated) is None  # nearly out: keep it


def test_requests_never_seen_count_at_the_held_out_rate() -> None:
    from distill.evaluate import with_new_requests

    rows = [{"request_id": "h1", "agree": False}, {"request_id": "h2", "agree": True},
            {"request_id": "t1", "agree": True}]
    ev = Evaluation({"n": 100, "agree": 95, "agreement": 0.95, "lower": 0.89, "upper": 0.98},
                    rows)
    fixed = with_new_requests(ev, {"h1", "h2"}, 0.2, 0.95).summary
    assert fixed["agree"] == 86 and fixed["judged_agree"] == 95  # 0.8 * 0.95 + 0.2 * 0.5
    assert fixed["lower"] < 0.9 < ev.summary["lower"] + 0.02
    assert with_new_requests(ev, {"h1", "h2"}, 0.0, 0.95) is ev  # a closed set of requests
    distinct = traces("sentiment", 60)
    tail = traces("sentiment", 80, seed=5)[:20]  # 20 requests seen once among 1,220
    curated = curate(rows_of(repeated(distinct, 20) + tail), heldout_percent=15)
    assert curated.seen_once >= 15 and curated.new_mass == curated.seen_once / curated.requests
