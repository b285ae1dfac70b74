"""The distill pass around training: a failure is registered, not repeated every pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import distill.train
from distill.pipeline import curate_task, distill_task, why_train
from gateway.embed import SharedEmbedder
from gateway.store.catalog import TaskRecord, list_students, upsert_task
from tests.helpers_students import add_teacher_rows, store_with_task


def test_a_failed_training_is_registered_and_not_retried_on_the_same_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_embedder: SharedEmbedder
) -> None:
    cfg, con, task = store_with_task(tmp_path)
    def explode(train: list[Any], **kw: Any) -> None:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(distill.train, "train_student", explode)
    curated = curate_task(con, cfg, task)
    assert why_train(con, cfg, task, curated) is not None
    outcome = distill_task(con, cfg, task, curated, progress=False,
                           embedder=shared_embedder, encoder=False)  # the generative kind fails
    assert outcome.passed is False and "out of memory" in outcome.reason
    [student] = list_students(con, "t-triage")
    assert student.status == "error" and student.metrics["train_examples"] == len(curated.train)
    assert why_train(con, cfg, task, curated) is None  # same data: not again
    assert not list((tmp_path / "students").glob("*/.v*.partial"))  # nothing left behind


def test_more_data_retrains_only_a_task_without_a_student_in_play(tmp_path: Path) -> None:
    from gateway.store.catalog import StudentRecord, add_student, get_task

    cfg, con, task = store_with_task(tmp_path)
    add_student(con, StudentRecord(task="t-triage", version=1, path="t-triage/v1",
                                   base_model="scratch:tiny", status="passed",
                                   metrics={"train_examples": 20, "n": 20, "agree": 20}))
    curated = curate_task(con, cfg, task)
    assert len(curated.train) > 40  # grown well past the 50% threshold
    con.execute("UPDATE tasks SET stage = 'primary', student_version = 1, stage_since = 0")
    assert why_train(con, cfg, get_task(con, "t-triage"), curated) is None  # healthy: keep it
    con.execute("UPDATE tasks SET stage = 'observe'")
    reason = why_train(con, cfg, get_task(con, "t-triage"), curated)
    assert reason is not None and "grew" in reason


def test_the_registry_records_the_student_kind_and_its_copy_slots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_embedder: SharedEmbedder
) -> None:
    import json

    import distill.candidates
    from distill.evaluate import Evaluation
    from gateway.registry import Registry

    cfg, con, _ = store_with_task(tmp_path)
    task = TaskRecord(id="t-orders", label="orders", kind="json",
                      info={"prompt_tokens_p99": 300, "answer_tokens_p99": 40})
    upsert_task(con, task)
    add_teacher_rows(con, "t-orders", "order_extract", 80, seed=4)
    seen: list[Any] = []

    def fake_fit(cfg: Any, prep: Any, heldout: Any, *args: Any, **kw: Any) -> Any:
        seen.extend(prep.train)
        n = len(heldout)
        return {"stopped_by": "time"}, Evaluation({"n": n, "agree": n, "agreement": 1.0,
                                                   "lower": 0.9, "upper": 1.0})

    monkeypatch.setattr(distill.candidates, "fit_generative", fake_fit)
    curated = curate_task(con, cfg, task)
    outcome = distill_task(con, cfg, task, curated, progress=False,
                           embedder=shared_embedder, encoder=False)
    assert outcome.version == 1 and outcome.metrics["student_kind"] == "generative"
    assert outcome.metrics["copy_coverage"] >= 0.9
    meta = json.loads((Registry(cfg.distill.students_dir).version_dir("t-orders", 1)
                       / "slimgate.json").read_text())
    assert meta["kind"] == "generative" and meta["copy_slots"]["enabled"]
    assert meta["copy_slots"]["coverage"]["heldout"]["share"] >= 0.9
    assert len(meta["copy_slots"]["gazetteer"]) > 10
    assert all("<V" in ex.answer["content"] for ex in seen)  # trained on placeholders


def test_a_pretrained_candidate_reads_the_raw_request_where_the_slots_fall_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_embedder: SharedEmbedder
) -> None:
    import json

    import distill.candidates
    from distill.evaluate import Evaluation
    from gateway.registry import Registry

    cfg, con, _ = store_with_task(tmp_path)
    cfg = cfg.model_copy(update={"distill": cfg.distill.model_copy(update={"candidates": [
        cfg.distill.candidates[0].model_copy(update={"model": "/models/smol", "params": 135_000_000,
                                                     "context": 8192, "method": "lora"})]})})
    task = TaskRecord(id="t-orders", label="orders", kind="json",
                      info={"prompt_tokens_p99": 300, "answer_tokens_p99": 40})
    upsert_task(con, task)
    add_teacher_rows(con, "t-orders", "order_extract", 80, seed=4)
    # the slots capture only some held-out values whole: a student on <V1> cannot pass
    monkeypatch.setattr(distill.candidates, "coverage",
                        lambda _ex, _slots: {"share": 0.7, "answers_whole": 0.5})
    seen: list[Any] = []

    def fake_fit(cfg: Any, prep: Any, heldout: Any, *args: Any, **kw: Any) -> Any:
        seen.extend(prep.train)
        n = len(heldout)
        return {"stopped_by": "time"}, Evaluation({"n": n, "agree": n, "agreement": 1.0,
                                                   "lower": 0.9, "upper": 1.0})

    monkeypatch.setattr(distill.candidates, "fit_generative", fake_fit)
    outcome = distill_task(con, cfg, task, curate_task(con, cfg, task), progress=False,
                           embedder=shared_embedder, encoder=False)
    assert outcome.version == 1 and outcome.metrics["copy_coverage"] == 0.7
    meta = json.loads((Registry(cfg.distill.students_dir).version_dir("t-orders", 1)
                       / "slimgate.json").read_text())
    assert meta["copy_slots"]["enabled"] is False  # served on the raw request, as trained
    assert "0.50" in meta["copy_slots"]["reason"]
    assert seen and not any("<V" in ex.answer["content"] for ex in seen)


def test_a_near_miss_ends_the_run_before_dearer_candidates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_embedder: SharedEmbedder
) -> None:
    import distill.candidates
    from distill.evaluate import Evaluation

    cfg, con, task = store_with_task(tmp_path)
    cfg = cfg.model_copy(update={"distill": cfg.distill.model_copy(update={"candidates": [
        *cfg.distill.candidates,
        cfg.distill.candidates[0].model_copy(update={"model": "scratch:small",
                                                     "params": 8_000_000})]})})
    trained: list[str] = []

    def near_miss(cfg: Any, prep: Any, heldout: Any, kind: Any, policy: Any, candidate: Any,
                  *args: Any, **kw: Any) -> Any:
        trained.append(candidate.model)  # 39/42: 0.93 [0.81, 0.98], issue 19's encoder
        return {}, Evaluation({"n": 42, "agree": 39, "agreement": 39 / 42, "lower": 0.81,
                               "upper": 0.98})

    monkeypatch.setattr(distill.candidates, "fit_generative", near_miss)
    curated = curate_task(con, cfg, task)
    outcome = distill_task(con, cfg, task, curated, progress=False,
                           embedder=shared_embedder, encoder=False)
    assert trained == ["scratch:tiny"]  # the bigger candidate waits: shadow proves this one
    assert outcome.status == "near" and outcome.passed is False
    assert "near miss" in outcome.reason
    assert [s.status for s in list_students(con, "t-triage")] == ["near"]
