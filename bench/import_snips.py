"""Day one without live traffic: public SNIPS data imported, then `slimgate distill`.

Builds, from the SNIPS benchmark's training utterances (`bench.loop_workload.pools`: each
sentence serves one of three task types), an OpenAI chat fine-tuning JSONL (tool calls and
intent labels; the dataset's annotation is the teacher's answer) and an OpenAI Batch API
input + output pair (slots as schema-bound JSON, with one failed request the import skips).
Then it runs `slimgate traces import` and `slimgate distill` on an empty store, in this
process, and prints the tasks discovered and the students' held-out results (also saved to
bench/results/import-snips-<date>.json).

    PYTHONPATH=. python bench/import_snips.py --snips /path/to/snipsco/nlu-benchmark
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def build_files(snips: Path, out: Path, per_task: int) -> list[str]:
    from bench.loop_workload import Sources, pools
    from bench.snips_workload import utterances

    by_type = pools(Sources(utterances(snips, "train"), [], []), seed=0)
    tuning = out / "snips-finetune.jsonl"
    with tuning.open("w") as f:
        for kind in ("snips_tools", "snips_label"):
            for item in by_type[kind][:per_task]:
                line: dict[str, Any] = {"messages": [*item.request["messages"], item.answer]}
                if "tools" in item.request:
                    line["tools"] = item.request["tools"]
                    line["parallel_tool_calls"] = False
                f.write(json.dumps(line) + "\n")
    inputs, outputs = out / "snips-batch-input.jsonl", out / "snips-batch-output.jsonl"
    with inputs.open("w") as fin, outputs.open("w") as fout:
        for n, item in enumerate(by_type["snips_json"][:per_task + 1]):
            body = {"model": "gpt-4o-mini", **item.request}
            fin.write(json.dumps({"custom_id": f"req-{n}", "method": "POST",
                                  "url": "/v1/chat/completions", "body": body}) + "\n")
            answer = {"status_code": 200, "request_id": f"r{n}", "body": {
                "id": f"chatcmpl-{n}", "object": "chat.completion", "model": "gpt-4o-mini",
                "choices": [{"index": 0, "message": item.answer, "finish_reason": "stop"}]}}
            failed = {"code": "server_error", "message": "The server had an error"}
            fout.write(json.dumps({"id": f"batch_req_{n}", "custom_id": f"req-{n}",
                                   "response": None if n == 0 else answer,
                                   "error": failed if n == 0 else None}) + "\n")
    return [str(tuning), str(inputs), str(outputs)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--snips", default="/work/.mirror/snipsco+nlu-benchmark/repo",
                   help="a checkout (or bare git dir) of github.com/snipsco/nlu-benchmark")
    p.add_argument("--dir", default="/tmp/slimgate-import-snips", help="store and students")
    p.add_argument("--per-task", type=int, default=600, help="examples per task type")
    p.add_argument("--budget-s", type=float, default=90.0, help="training seconds per task")
    args = p.parse_args()
    from gateway.cli import main as slimgate
    from gateway.config import load_config
    from gateway.store.catalog import best_student, list_students, list_tasks
    from gateway.store.db import connect
    from gateway.store.stages import count_task_examples

    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    for old in ("store.db", "store.db-wal", "store.db-shm"):
        (work / old).unlink(missing_ok=True)
    config = work / "slimgate.toml"
    config.write_text(f'[store]\npath = "{work / "store.db"}"\n\n[distill]\n'
                      f'students_dir = "{work / "students"}"\nstudent_kinds = ["encoder"]\n\n'
                      f"[distill.training]\ntime_budget_s = {args.budget_s}\n")
    files = build_files(Path(args.snips), work, args.per_task)
    began = time.perf_counter()
    slimgate(["traces", "import", "--config", str(config), *files])
    imported_s = time.perf_counter() - began
    began = time.perf_counter()
    slimgate(["distill", "--config", str(config)])
    distill_s = time.perf_counter() - began
    slimgate(["tasks", "--config", str(config)])
    con = connect(load_config(config).store)
    rows = []
    for t in list_tasks(con):
        shown = best_student(con, t.id) or (list_students(con, t.id) or [None])[-1]
        m = shown.metrics if shown else {}
        rows.append({"task": t.id, "label": t.label, "kind": t.kind,
                     "examples": count_task_examples(con, t.id),
                     "student": f"v{shown.version} {shown.status}" if shown else None,
                     "student_kind": m.get("student_kind"), "heldout": m.get("heldout_examples"),
                     "agreement": m.get("agreement"), "lower": m.get("lower"),
                     "upper": m.get("upper")})
    live = con.execute("SELECT COUNT(*) FROM exchanges WHERE source IS NULL").fetchone()[0]
    con.close()
    result = {"date": str(date.today()), "import_s": round(imported_s, 1),
              "distill_s": round(distill_s, 1), "live_rows": live, "tasks": rows,
              "args": vars(args)}
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"import-snips-{date.today()}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
