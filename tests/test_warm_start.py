"""Which earlier adapter a pretrained candidate's next run on a task goes on from, and when
none may be used (another base, a full model, another way of asking, a judged set that
would hold what it trained on)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill.warm_start import warm_start
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
