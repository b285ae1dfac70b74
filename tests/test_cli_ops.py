"""The store-facing commands against a real store on each engine: tasks, overrides, prune,
report, maintain."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.registry import Registry
from gateway.store.catalog import StudentRecord, TaskRecord, add_student, upsert_task
from gateway.store.db import connect
from tests.pg import store_table


@pytest.fixture
def cfg_path(tmp_path: Path, store_target: str) -> Path:
    path = tmp_path / "config.toml"
    key, value = next(iter(store_table(store_target).items()))
    path.write_text(f'[store]\n{key} = "{value}"\nretention_days = 30\n\n'
                    f'[distill]\nstudents_dir = "{tmp_path / "students"}"\n')
    con = connect(store_target)
    upsert_task(con, TaskRecord(id="t-a", label="orders", kind="json"))
    registry = Registry(tmp_path / "students")
    for v in range(1, 6):
        d = registry.version_dir("t-a", v)
        d.mkdir(parents=True)
        registry.write_meta(d, {"version": v})
        add_student(con, StudentRecord(task="t-a", version=v, path=f"t-a/v{v}",
                                       base_model="scratch:tiny",
                                       status="passed" if v == 2 else "failed",
                                       metrics={"n": 30, "agree": 29, "agreement": 0.97,
                                                "lower": 0.9, "upper": 0.99}))
    con.close()
    return path


def test_tasks_promote_pin_prune_and_report(
    cfg_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = ["--config", str(cfg_path)]
    assert main(["tasks", *c]) == 0
    assert "orders" in capsys.readouterr().out
    assert main(["promote", "t-a", *c]) == 0  # observe → shadow with v2, the one that passed
    assert "observe → shadow" in capsys.readouterr().out
    assert main(["pin", "t-a", "--to", "teacher", *c]) == 0
    assert main(["promote", "nope", *c]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["prune", "--keep", "1", *c]) == 0
    kept = Registry(tmp_path / "students").versions("t-a")
    assert kept == [2, 5]  # the newest, and the one that passed (in use)
    assert main(["report", "--json", *c]) == 0
    out = capsys.readouterr().out
    assert '"t-a"' in out and "pinned to the teacher" in out
    assert main(["maintain", *c]) == 0
    assert "rows deleted" in capsys.readouterr().out
