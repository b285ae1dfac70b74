"""How long does the shadow-eval report take on a large store? Build and render, timed.

Writes a store of 100k exchanges and 10k comparisons over five tasks (the rows the test
suite's report store is made of, at scale), then prints the best of three `build_report`
runs and one `render_html`. Run: `.venv/bin/python bench/report_bench.py`.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test suite's row builders

from gateway.report import build_report, render_html  # noqa: E402
from gateway.store.db import connect  # noqa: E402
from tests.helpers_report import NOW, T0, comparison_row, exchange_row, insert_row  # noqa: E402


def build_store(path: str, exchanges: int = 100_000, comparisons: int = 10_000) -> None:
    con = connect(path)
    con.execute("BEGIN")
    for k in range(5):
        insert_row(con, "tasks", {"id": f"t{k}", "label": f"task {k}", "kind": "json",
                                  "info": "{}", "created_at": T0, "updated_at": T0,
                                  "stage": "canary", "student_version": 1})
    cols = list(exchange_row(0, "t0", T0))
    con.executemany(
        f"INSERT INTO exchanges ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
        [list(exchange_row(i, f"t{i % 5}", T0 + i * 0.36, backend="student" if i % 3 == 0
                           else "teacher").values()) for i in range(exchanges)],
    )
    rows = [comparison_row(f"t{i % 5}", 1, "audit", T0 + i * 3.6, f"t{i % 5}-{i}", i % 9 != 0)
            for i in range(comparisons)]
    marks = ", ".join("?" for _ in rows[0])
    con.executemany(f"INSERT INTO comparisons ({', '.join(rows[0])}) VALUES ({marks})",
                    [list(r.values()) for r in rows])
    con.execute("COMMIT")
    con.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "big.db")
        build_store(path)
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            report = build_report(path, now=NOW)
            timings.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        render_html(report)
        html_ms = (time.perf_counter() - started) * 1000
    assert report["totals"]["requests"] == 100_000
    print(f"build_report on 100k exchanges + 10k comparisons: {min(timings):.0f} ms "
          f"(best of 3); render_html {html_ms:.0f} ms")


if __name__ == "__main__":
    main()
