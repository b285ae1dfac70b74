"""Judge calls: order randomised and mapped back, failures never agree, sampling, cost, and
where the judge applies (live shadow/audit, the held-out gate) — never as training data.

The teacher is a stub `Ask`/upstream that reads the judge prompt and replies as scripted.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from distill.curate import Example
from distill.evaluate import evaluate
from distill.judge_client import HeldoutJudge
from distill.pipeline import heldout_judge
from gateway.config import Config, parse_config
from gateway.judge import JUDGE_BACKEND, TeacherJudge
from gateway.metrics import Metrics
from gateway.report.data import build_report
from gateway.shadow import Job, ShadowRunner
from gateway.store.catalog import TaskRecord, chat_exchanges, upsert_task
from gateway.store.db import connect
from gateway.store.recorder import Exchange, LiveComparison
from gateway.upstream.base import UpstreamFailure
from gateway.upstream.pool import Served
from gateway.worker_process import worker_env
from policies.judge import RUBRIC

STUDENT = "STUDENT: we sent you a replacement"
TEACHER = "We refunded you in full"
MODEL = {"name": "gpt-4o-mini", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "PROV_KEY"}


def student_is_a(body: dict[str, Any]) -> bool:
    user = body["messages"][1]["content"]
    return user.index("STUDENT") < user.index("ANSWER B:")


def answer(content: str, prompt_tokens: int = 120) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 2}}


class StubTeacher:
    """An `Ask`: replies `reply(body)`, after `delay_s`; counts calls and peak concurrency."""

    def __init__(self, reply: Any = lambda body: "SAME", delay_s: float = 0.0) -> None:
        self.reply, self.delay_s = reply, delay_s
        self.bodies: list[dict[str, Any]] = []
        self.running = self.peak = 0

    async def __call__(self, body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        self.bodies.append(body)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(self.delay_s)
            reply = self.reply(body)
            if isinstance(reply, Exception):
                raise reply
            return answer(reply), "gpt-4o-mini"
        finally:
            self.running -= 1


# --- the judge service --------------------------------------------------------------------


async def test_order_is_randomised_and_mapped_back_to_the_roles() -> None:
    # The judge always names the student's position as the one stating more.
    stub = StubTeacher(lambda body: "A_EXTRA" if student_is_a(body) else "B_EXTRA")
    seen = []
    for seed in (7, 7):
        judge = TeacherJudge(stub, "gpt-4o-mini", timeout_s=5, rng=random.Random(seed))
        verdicts = [(await judge.judge(STUDENT, TEACHER, None))[0] for _ in range(30)]
        assert {v.outcome for v in verdicts} == {"student_extra"}
        seen.append([v.student_first for v in verdicts])
    assert seen[0] == seen[1]  # seeded: the same orders again
    assert set(seen[0]) == {True, False}  # both orders shown


@pytest.mark.parametrize("stub", [
    StubTeacher(delay_s=1.0),
    StubTeacher(lambda body: UpstreamFailure("server", "upstream 500", status=500)),
    StubTeacher(lambda body: "I think they are the SAME"),
])
async def test_a_timeout_an_error_or_a_loose_reply_is_a_failure(stub: StubTeacher) -> None:
    judge = TeacherJudge(stub, "gpt-4o-mini", timeout_s=0.05, rng=random.Random(1))
    verdict, call = await judge.judge(STUDENT, TEACHER, None)
    assert verdict.failed and not verdict.agree
    assert call is not None  # the call made still gets recorded (and costs)


# --- live shadow and audit ----------------------------------------------------------------


class StubUpstreams:
    """The gateway's upstreams as the shadow runner uses them: the judge prompt answered by
    `judge`, any other request (an audit) by the teacher's text."""

    def __init__(self, config: Config, judge: StubTeacher) -> None:
        self.config, self.judge = config, judge
        self.teacher_calls = 0

    async def complete(self, model: Any, endpoint: str,
                       body: dict[str, Any]) -> tuple[dict[str, Any], Served]:
        if body["messages"][0].get("content") == RUBRIC:
            resp, _ = await self.judge(body)
        else:
            self.teacher_calls += 1
            resp = answer(TEACHER)
        return resp, Served(self.config.model(body["model"]), 1)  # type: ignore[arg-type]


class Student:
    def __init__(self, content: str) -> None:
        self.content, self.calls = content, 0

    async def complete(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        return answer(self.content)


class Records:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def record(self, item: Any) -> None:
        self.items.append(item)

    def of(self, kind: type) -> list[Any]:
        return [i for i in self.items if isinstance(i, kind)]


async def no_embedding(a: str, b: str) -> float:
    raise AssertionError("the judge replaces the embedding")


async def high_cosine(a: str, b: str) -> float:
    return 0.97  # what MiniLM gives "refunded" vs "replacement" style pairs


def shadow_setup(policy: dict[str, Any], judge: StubTeacher,
                 similarity: Any = no_embedding) -> tuple[ShadowRunner, Records, StubUpstreams]:
    cfg = parse_config({"models": [MODEL], "policy": policy})
    records, ups = Records(), StubUpstreams(cfg, judge)
    runner = ShadowRunner(cfg, ups, records, Metrics(), similarity)  # type: ignore[arg-type]
    return runner, records, ups


def job(mode: Any, student: Student | None = None, served: str = TEACHER) -> Job:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "My parcel broke"}]}
    teacher = parse_config({"models": [MODEL]}).model("gpt-4o-mini") if mode == "audit" else None
    return Job(mode=mode, task="acme.support", version=1, kind="text", request_id="req-1",
               body=body, served={"role": "assistant", "content": served}, served_ms=5.0,
               served_tokens=4, student=student, teacher=teacher, key_id="k-acme")


async def test_shadow_judge_says_same_agree() -> None:
    judge = StubTeacher(lambda body: "SAME")
    runner, records, _ = shadow_setup({"text_judge": "teacher", "text_judge_rate": 1.0}, judge)
    assert await runner._run(job("shadow", Student("Your money is back: full refund"))) == "agree"
    [cmp] = records.of(LiveComparison)
    assert cmp.agree and cmp.detail == "judge: same facts and actions"
    [call] = records.of(Exchange)
    assert (call.backend, call.task, call.key_id) == (JUDGE_BACKEND, "acme.support", "k-acme")
    assert call.request_id.startswith("req-1:judge:") and call.upstream_model == "gpt-4o-mini"


async def test_live_judge_failure_is_recorded_as_a_disagreement() -> None:
    judge = StubTeacher(lambda body: "Both answers are the same.")
    runner, records, _ = shadow_setup({"text_judge": "teacher", "text_judge_rate": 1.0}, judge)
    assert await runner._run(job("audit", served=STUDENT)) == "judge_failed"
    [cmp] = records.of(LiveComparison)
    assert not cmp.agree and cmp.detail.startswith("judge failure")
    assert len(records.of(Exchange)) == 1  # the failed call is still counted


async def test_unsampled_comparisons_ask_nobody_and_record_nothing() -> None:
    judge = StubTeacher()
    runner, records, ups = shadow_setup({"text_judge": "teacher", "text_judge_rate": 0.0}, judge)
    student = Student("anything")
    assert await runner._run(job("shadow", student)) == "not_sampled"
    assert await runner._run(job("audit", served=STUDENT)) == "not_sampled"
    assert (student.calls, ups.teacher_calls, judge.bodies, records.items) == (0, 0, [], [])


async def test_without_the_judge_the_embedding_decides() -> None:
    judge = StubTeacher()
    runner, records, _ = shadow_setup({}, judge, similarity=high_cosine)
    assert await runner._run(job("shadow", Student(STUDENT))) == "agree"  # cosine 0.97
    assert judge.bodies == [] and not records.of(Exchange)
    runner, records, _ = shadow_setup({"text_judge": "teacher", "text_judge_rate": 1.0},
                                      StubTeacher(lambda body: "CONFLICT"), high_cosine)
    assert await runner._run(job("shadow", Student(STUDENT))) == "disagree"


# --- the held-out gate --------------------------------------------------------------------


def example(i: int, answer_text: str) -> Example:
    return Example(request_id=f"h{i}", seq=i, key=f"{i:08x}", tools=None, response_format=None,
                   messages=[{"role": "user", "content": f"question {i}"}],
                   answer={"role": "assistant", "content": answer_text})


class HeldoutStudent:
    def generate(self, requests: list[dict[str, Any]], max_new_tokens: int) -> list[Any]:
        return [SimpleNamespace(message={"role": "assistant", "content": STUDENT},
                                completion_tokens=5) for _ in requests]


def heldout_cfg(**policy: Any) -> Config:
    return parse_config({"models": [MODEL], "policy": {"text_judge": "teacher", **policy}})


async def ask_factory_for(stub: StubTeacher) -> Any:
    async def factory(model: Any) -> Any:
        async def close() -> None:
            pass
        return stub, close
    return factory


def test_the_gate_uses_the_judge_when_configured_and_the_embedding_otherwise() -> None:
    heldout = [example(i, TEACHER) for i in range(6)]
    by_embedding = evaluate(HeldoutStudent(), heldout, "text", confidence=0.95,
                            text_threshold=0.85, similarity=lambda pairs: [0.97] * len(pairs))
    assert by_embedding.summary["agreement"] == 1.0
    assert by_embedding.summary["text_judge"] == "embedding"
    cfg = heldout_cfg()
    stub = StubTeacher(lambda body: "CONFLICT")
    judge = HeldoutJudge(cfg, cfg.policy.for_task("t"), task="t", model="gpt-4o-mini", con=None,
                         ask_factory=asyncio.run(ask_factory_for(stub)))
    by_judge = evaluate(HeldoutStudent(), heldout, "text", confidence=0.95,
                        text_threshold=0.85, text_judge=judge)
    assert by_judge.summary["agreement"] == 0.0 and by_judge.summary["n"] == 6
    assert by_judge.summary["text_judge"] == "teacher" and len(stub.bodies) == 6


def test_pipeline_builds_a_judge_only_where_the_policy_asks(tmp_path: Path) -> None:
    con = connect(str(tmp_path / "s.db"))
    task = TaskRecord(id="acme.support", label="support", kind="text")
    plain = parse_config({"models": [MODEL]})
    assert heldout_judge(con, plain, task, 1) is None
    assert isinstance(heldout_judge(con, heldout_cfg(), task, 1), HeldoutJudge)
    con.close()


def test_heldout_judging_is_bounded_costed_and_never_training_data(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    con = connect(db)
    upsert_task(con, TaskRecord(id="acme.support", label="support", kind="text",
                                created_at=time.time(), updated_at=time.time()))
    cfg = heldout_cfg(text_judge_heldout_max=4, text_judge_concurrency=2)
    stub = StubTeacher(lambda body: "SAME", delay_s=0.01)
    judge = HeldoutJudge(cfg, cfg.policy.for_task("acme.support"), task="acme.support",
                         model="gpt-4o-mini", con=con,
                         ask_factory=asyncio.run(ask_factory_for(stub)))
    verdicts = judge([(f"{STUDENT} {i}", f"{TEACHER} {i}", None) for i in range(7)])
    assert sum(v is not None for v in verdicts) == 4 and judge.unjudged == 3  # the budget
    assert stub.peak <= 2  # the concurrency bound
    usage = judge.usage.as_dict()
    assert (usage["calls"], usage["prompt_tokens"], usage["completion_tokens"]) == (4, 480, 8)
    assert usage["cost_usd"] > 0  # priced from litellm's bundled map
    rows = list(con.execute("SELECT backend, task, cost_usd FROM exchanges"))
    assert len(rows) == 4 and all(r["backend"] == "judge" and r["cost_usd"] > 0 for r in rows)
    assert list(chat_exchanges(con)) == []  # discovery and curation never see them
    assert list(chat_exchanges(con, task="acme.support")) == []
    con.close()
    report = build_report(db)
    [row] = report["tasks"]
    assert row["traffic"]["requests"] == 0  # not the task's traffic
    assert row["cost"]["judge"]["calls"] == 4 and row["cost"]["judge"]["usd"] > 0
    assert report["totals"]["judge_calls"] == 4 and report["totals"]["requests"] == 0


# --- the worker's keys --------------------------------------------------------------------


def test_the_worker_gets_the_judge_key_only_when_the_teacher_judges() -> None:
    env = {"PATH": "/bin", "PROV_KEY": "sk-provider", "OTHER_KEY": "x"}
    other = {"name": "other", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "OTHER_KEY"}
    assert "PROV_KEY" not in worker_env(parse_config({"models": [MODEL, other]}), env)
    judged = parse_config({"models": [MODEL, other],
                           "policy": {"tasks": [{"match": "acme.*", "text_judge": "teacher"}],
                                      "text_judge_model": "gpt-4o-mini"}})
    out = worker_env(judged, env)
    assert out["PROV_KEY"] == "sk-provider" and "OTHER_KEY" not in out


# --- through the gateway, and between tenants ---------------------------------------------


async def test_gateway_records_the_judge_call_under_the_clients_key(
    tmp_path: Path, fresh_upstream: Any, keys: str
) -> None:
    """End to end: the fake teacher answers the judge with an echo, not a verdict word — a
    judge failure, recorded as a disagreement; the call itself is kept as a judge exchange
    of the client's key and task, and discovery never reads it."""
    from tests.helpers import TEST_TENANT, ScriptedStudent, add_task, app_with_student, serve_chats

    body = {"model": "gpt-test", "messages": [{"role": "system", "content": "Reply kindly."},
                                              {"role": "user", "content": "my parcel broke"}]}
    student = ScriptedStudent(content="We sent you a replacement.")
    policy = {"shadow_rate": 1.0, "text_judge": "teacher", "text_judge_rate": 1.0}
    app, cfg = await app_with_student(tmp_path, fresh_upstream, student, "shadow", policy=policy)
    con = connect(cfg.store.path)
    con.execute("DELETE FROM tasks")
    con.close()
    add_task(cfg.store.path, "shadow", body=body, kind="text")
    [r] = await serve_chats(app, keys, [body])
    assert r.status_code == 200
    con = connect(cfg.store.path)
    [cmp] = list(con.execute("SELECT agree, detail FROM comparisons"))
    assert cmp["agree"] == 0 and cmp["detail"].startswith("judge failure: reply 'echo:")
    rows = list(con.execute("SELECT backend, key_id, task FROM exchanges ORDER BY seq"))
    assert [(r["backend"], r["key_id"]) for r in rows] == [("teacher", TEST_TENANT),
                                                          ("judge", TEST_TENANT)]
    assert rows[1]["task"] == "t-orders"
    assert [r["backend"] for r in chat_exchanges(con)] == ["teacher"]
    con.close()


async def test_each_tenants_judge_call_holds_its_own_texts_only() -> None:
    judge = StubTeacher(lambda body: "SAME")
    runner, records, _ = shadow_setup({"text_judge": "teacher", "text_judge_rate": 1.0}, judge)
    for tenant in ("acme", "globex"):
        j = job("shadow", Student(f"{tenant} student answer"), served=f"{tenant} teacher answer")
        j.task, j.key_id, j.request_id = f"{tenant}.support", f"k-{tenant}", f"req-{tenant}"
        j.body = {"model": "gpt-4o-mini",
                  "messages": [{"role": "user", "content": f"{tenant} question"}]}
        await runner._run(j)
    for body, tenant, other in zip(judge.bodies, ("acme", "globex"), ("globex", "acme"),
                                   strict=True):
        prompt = " ".join(m["content"] for m in body["messages"])
        assert prompt.count(tenant) == 3 and other not in prompt
    calls = records.of(Exchange)
    assert [(c.task, c.key_id) for c in calls] == [("acme.support", "k-acme"),
                                                   ("globex.support", "k-globex")]
