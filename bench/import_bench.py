"""How fast does `slimgate traces import` record a large history? Lines per second, measured.

Writes N lines (default 100,000) of the synthetic agent workload (`gateway.offline.workload`:
six tasks, long system prompts and tool sets, so static-text dedupe works as on live agent
traffic) as OpenAI fine-tuning JSONL or `{request, response}` pairs, imports them into an
empty store, then imports the same file again (every line a duplicate), and prints the
seconds and lines per second of both. `--scrub` turns `store.scrub` on; `--pg URL` uses a
PostgreSQL database (emptied first) instead of a SQLite file.

    PYTHONPATH=. python bench/import_bench.py [--lines 100000] [--format finetune|pairs]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def write_file(path: Path, lines: int, fmt: str) -> int:
    from gateway.offline.workload import generate, to_traces

    with path.open("w") as f:
        for trace in to_traces(generate(lines, seed=0)):
            if fmt == "pairs":
                f.write(json.dumps(trace) + "\n")
            else:
                req, answer = trace["request"], trace["response"]["choices"][0]["message"]
                line = {"messages": [*req["messages"], answer]}
                line.update({k: req[k] for k in ("tools", "parallel_tool_calls") if k in req})
                f.write(json.dumps(line) + "\n")
    return path.stat().st_size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=100_000)
    p.add_argument("--format", choices=["finetune", "pairs"], default="finetune")
    p.add_argument("--scrub", action="store_true", help="store.scrub = true")
    p.add_argument("--pg", help="postgresql:// URL of a scratch database (its tables dropped)")
    args = p.parse_args()
    from gateway.config import parse_config
    from gateway.offline.trace_import import import_traces

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / f"history-{args.format}.jsonl"
        began = time.perf_counter()
        size = write_file(data, args.lines, args.format)
        print(f"wrote {args.lines:,} lines ({size / 1e6:.0f} MB) in "
              f"{time.perf_counter() - began:.1f} s")
        if args.pg:
            import psycopg

            with psycopg.connect(args.pg, autocommit=True) as c:
                c.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        store = {"url": args.pg} if args.pg else {"path": str(Path(tmp) / "store.db")}
        cfg = parse_config({"store": {**store, "scrub": args.scrub}})
        for attempt in ("first import", "again (all duplicates)"):
            began = time.perf_counter()
            report = import_traces(cfg, [str(data)])
            seconds = time.perf_counter() - began
            print(f"{attempt}: {report.written:,} written, {report.duplicates:,} duplicates, "
                  f"{report.bad} bad in {seconds:.1f} s = {args.lines / seconds:,.0f} lines/s")
        if not args.pg:
            print(f"store: {os.path.getsize(Path(tmp) / 'store.db') / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
