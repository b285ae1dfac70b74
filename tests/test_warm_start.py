"""Which earlier adapter a pretrained candidate's next run on a task goes on from, and when
none may be used (another base, a full model, another way of asking, a judged set that
would hold what it trained on); and whether a task's runs are worth going on, from the
held-out agreement of the runs that went on from each other."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from distill.warm_start import chain_agreements, going_on, warm_start
from gateway.registry import META, Registry
from gateway.store.catalog import StudentRecord

BASE = "/models/smollm2"


def student(registry: Registry, version: int, *, base: str = BASE, adapter: bool = True,
            slots: bool = False, percent: int = 15, status: str = "failed",
            **metrics: Any) -> StudentRecord:
    path = registry.version_dir("t1", version)
    path.mkdir(parents=True)
    (path / META).write_text(json.dumps({"copy_slots": {"enabled": slots}}))
    if adapter:
        (path / "adapter_config.json").write_text("{}")
    return StudentRecord(task="t1", version=version, path=registry.relative(path),
                         base_model=base, status=status,
                         metrics={"student_kind": "generative", "heldout_percent": percent,
                                  "valid_rate": 1.0, **metrics})


def pick(students: list[StudentRecord], registry: Registry, *, slots: bool = False,
         percent: int = 15) -> int | None:
    found = warm_start(students, registry, base_model=BASE, slots=slots, heldout_percent=percent)
    return found.version if found else None


def test_the_newest_adapter_of_the_same_base_is_taken(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    students = [student(reg, 1), student(reg, 2, status="near"),
                student(reg, 3, base="scratch:tiny", adapter=False),
                student(reg, 4, base="/models/qwen")]
    found = warm_start(students, reg, base_model=BASE, slots=False, heldout_percent=15)
    assert found is not None and found.version == 2
    assert found.path == reg.version_dir("t1", 2)
    assert pick([], reg) is None


def test_nothing_is_taken_that_could_leak_or_was_learnt_another_way(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    # it trained on requests hashed 10-14, which a held-out share of 15% now judges
    assert pick([student(reg, 1, percent=10)], reg, percent=15) is None
    assert pick([student(reg, 2, percent=20)], reg, percent=15) == 2  # a smaller share: safe
    assert pick([student(reg, 3, slots=True)], reg, slots=False) is None
    assert pick([student(reg, 4, slots=True)], reg, slots=True) == 4
    assert pick([student(reg, 5, adapter=False)], reg) is None  # a full model
    assert pick([student(reg, 6, status="error")], reg) is None
    assert pick([student(reg, 8, student_kind="encoder")], reg) is None
    gone = student(reg, 9)
    (reg.version_dir("t1", 9) / META).unlink()  # pruned, or never completed
    assert pick([gone], reg) is None
    # the newest that qualifies, past one that does not
    assert pick([student(reg, 10), student(reg, 11, percent=5)], reg, percent=15) == 10


def run(version: int, agreement: float, *, base: str = BASE, warm_from: int | None = None,
        status: str = "failed") -> StudentRecord:
    training = {"warm_from": f"v{warm_from}"} if warm_from else {}
    return StudentRecord(task="t1", version=version, path="", base_model=base, status=status,
                         metrics={"agreement": agreement, "training": training})


def test_a_chain_follows_the_adapters_each_run_went_on_from() -> None:
    students = [run(1, 0.40), run(2, 0.50, warm_from=1), run(3, 0.10, base="scratch:tiny"),
                run(4, 0.0, warm_from=2, status="error"), run(5, 0.55, warm_from=2),
                run(6, 0.9, base="/models/qwen", warm_from=5)]
    assert chain_agreements(students, BASE) == [0.40, 0.50, 0.55]  # v5 <- v2 <- v1
    assert chain_agreements(students + [run(7, 0.3)], BASE) == [0.3]  # a fresh start
    assert chain_agreements(students, "/models/other") == []
    # a link to a run that is not there (or not earlier) ends the chain, never loops
    assert chain_agreements([run(2, 0.5, warm_from=1)], BASE) == [0.5]
    assert chain_agreements([run(3, 0.5, warm_from=3)], BASE) == [0.5]


@pytest.mark.parametrize(("agreements", "stops"), [
    ([], None),
    ([0.43], None),  # no run has gone on yet: the first always does
    ([0.59, 0.56], None),  # one run that did not gain (WikiSQL, the worker's passes): noise
    ([0.38, 0.76, 0.76], None),  # restaurants (docs/students.md); its next run reached 0.90
    ([0.38, 0.76, 0.76, 0.90], None),
    ([0.59, 0.56, 0.58], "did not beat its best (0.59: then 0.56, 0.58)"),
    ([0.50, 0.70, 0.60, 0.65], "did not beat its best"),
    # WikiSQL on grown data, 0.55 -> 0.60 -> 0.61: +0.05 then +0.01 tends to ~0.61
    ([0.55, 0.60, 0.61], "levels off near 0.61, under the bar (0.90)"),
    ([0.60, 0.80, 0.88], None),  # +0.20, +0.08: tends to ~0.93, over the bar
    ([0.40, 0.50, 0.62], None),  # gains that grow
    ([0.50, 0.45, 0.55], None),  # it fell, then rose past its best
])
def test_runs_go_on_while_they_gain_and_can_still_reach_the_bar(
    agreements: list[float], stops: str | None
) -> None:
    reason = going_on(agreements, 0.90)
    assert (reason is None) if stops is None else (reason is not None and stops in reason)
