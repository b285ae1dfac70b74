"""A LoRA run cut by its time budget goes on from its adapter on the same data, in the next
pass, while the task's runs still gain — and not otherwise (a run that ended by its epochs,
a chain that stopped gaining, a pruned adapter, a student in play, a candidate no longer
configured). The pass runs that candidate alone, in its expensive phase."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import distill.passes
from distill.curate import Curated
from distill.pipeline import TaskOutcome
from distill.plan import Continuation, continuation_owed
from gateway.config import CandidateConfig, Config, parse_config
from gateway.registry import Registry
from gateway.store.catalog import StudentRecord, TaskRecord, add_student, upsert_task
from gateway.store.db import Connection, connect

SMOL = CandidateConfig(model="/models/SmolLM2-135M-Instruct", params=134_515_008,
                       context=8192, method="lora")
TINY = CandidateConfig(model="scratch:tiny", params=2_000_000, context=1024)


def setup(tmp_path: Path) -> tuple[Config, Connection, Registry, TaskRecord]:
    cfg = parse_config({"store": {"path": str(tmp_path / "s.db")},
                        "distill": {"students_dir": str(tmp_path / "students"),
                                    "candidates": [SMOL.model_dump(), TINY.model_dump()]}})
    con = connect(cfg.store.path)
    task = TaskRecord(id="sql", label="sql", kind="text")
    upsert_task(con, task)
    return cfg, con, Registry(cfg.distill.students_dir), task


def add(con: Connection, registry: Registry, version: int, agreement: float, *,
        base: str = SMOL.model, method: str = "lora", stopped_by: str = "time",
        warm_from: int | None = None, status: str = "failed", adapter: bool = True,
        steps: int = 190) -> None:
    path = registry.version_dir("sql", version)
    path.mkdir(parents=True)
    if adapter:
        (path / "adapter_config.json").write_text("{}")
    training: dict[str, Any] = {"method": method, "stopped_by": stopped_by, "steps": steps}
    if warm_from:
        training["warm_from"] = f"v{warm_from}"
    add_student(con, StudentRecord(task="sql", version=version, path=registry.relative(path),
                                   base_model=base, status=status,
                                   metrics={"agreement": agreement, "training": training,
                                            "student_kind": "generative"}))


def owed(cfg: Config, con: Connection, task: TaskRecord) -> str | None:
    found = continuation_owed(con, cfg, task).candidate
    return found.model if found else None


def test_a_run_cut_by_its_budget_goes_on_while_its_runs_gain(tmp_path: Path) -> None:
    cfg, con, reg, task = setup(tmp_path)
    assert owed(cfg, con, task) is None  # nothing has run
    add(con, reg, 1, 0.43)
    assert owed(cfg, con, task) == SMOL.model  # the first run goes on
    add(con, reg, 2, 0.20, base=TINY.model, method="full", stopped_by="hopeless")
    assert owed(cfg, con, task) == SMOL.model  # a scratch run after it changes nothing
    add(con, reg, 3, 0.62, warm_from=1)
    assert owed(cfg, con, task) == SMOL.model  # +0.19: on
    add(con, reg, 4, 0.63, warm_from=3)  # +0.01 after +0.19: levels off near 0.63
    assert continuation_owed(con, cfg, task) == Continuation(
        None, f"{SMOL.model} does not go on: its runs' gains shrink (+0.19, then +0.01): "
              "going on, it levels off near 0.63, under the bar (0.90)")


@pytest.mark.parametrize("case", ["epochs", "no gain", "pruned", "near", "unconfigured",
                                  "in play", "few steps"])
def test_no_run_is_owed_where_going_on_would_waste_it_or_cannot_be(
    tmp_path: Path, case: str
) -> None:
    cfg, con, reg, task = setup(tmp_path)
    if case == "epochs":  # on a GPU: it saw its data the epochs it was given
        add(con, reg, 1, 0.5, stopped_by="epochs")
    elif case == "no gain":  # two runs in a row under its first
        add(con, reg, 1, 0.5)
        add(con, reg, 2, 0.48, warm_from=1)
        add(con, reg, 3, 0.49, warm_from=2)
    elif case == "pruned":
        add(con, reg, 1, 0.5, adapter=False)
    elif case == "near":  # shadow proves a near miss; its successor waits for more data
        add(con, reg, 1, 0.85, status="near")
    elif case == "few steps":  # S4 would not plan a run its budget holds so few steps of
        add(con, reg, 1, 0.1, steps=12)
    elif case == "unconfigured":
        add(con, reg, 1, 0.5, base="/models/gone")
    else:
        add(con, reg, 1, 0.5)
        task = TaskRecord(id="sql", label="sql", kind="text", stage="shadow")
    assert continuation_owed(con, cfg, task).candidate is None
    assert (continuation_owed(con, cfg, task).stopped is not None) == (case == "no gain")


def test_the_pass_runs_the_owed_candidate_alone_in_its_expensive_phase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, con, reg, task = setup(tmp_path)
    add(con, reg, 1, 0.43)
    con.close()
    calls: list[dict[str, Any]] = []

    def fake_distill_task(con: Any, cfg: Any, task: Any, curated: Any, **kw: Any) -> Any:
        calls.append({"task": task.id, "phase": kw["phase"], "only": kw.get("only")})
        return TaskOutcome(task.id, task.label, "trained", "ok")

    monkeypatch.setattr(distill.passes, "discover_tasks", lambda *a: 0)
    monkeypatch.setattr(distill.passes, "curate_task",
                        lambda *a: Curated())
    monkeypatch.setattr(distill.passes, "why_train", lambda *a: None)  # no new data
    monkeypatch.setattr(distill.passes, "missing_data", lambda *a: None)  # data enough
    monkeypatch.setattr(distill.passes, "distill_task", fake_distill_task)
    said: list[str] = []
    distill.passes.run_distill(cfg, report=said.append, embedder=object())  # type: ignore[arg-type]
    assert calls == [{"task": "sql", "phase": "expensive", "only": SMOL.model}]
    assert any("goes on from its adapter" in s for s in said)

    con = connect(cfg.store.path)
    add(con, reg, 2, 0.40, warm_from=1)  # two runs that did not beat 0.43: the next pass
    add(con, reg, 3, 0.42, warm_from=2)  # says so, and runs nothing
    con.close()
    calls.clear()
    outcomes = distill.passes.run_distill(cfg, report=said.append,
                                          embedder=object())  # type: ignore[arg-type]
    assert calls == []
    assert [o.reason for o in outcomes] == [
        f"nothing new since the last student; {SMOL.model} does not go on: its last two "
        "runs, going on from the ones before, did not beat its best (0.43: then 0.40, 0.42)"]
