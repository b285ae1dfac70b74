"""The `slimgate` command line: every verb and its flags, declared once.

`serve` runs the gateway (and, by default, the distill worker beside it); `worker` runs the
loop alone; `distill` runs one pass; `tasks`, `report` and the operator overrides read and
change the store; `replay-teacher`, `traces` and `demo` are for offline runs; `traces import`
and `config from-litellm` bring a team's history and setup in; `students export` takes a
student out. Each verb's function lives in `process_commands.py` (verbs that run a process),
`store_commands.py` (verbs that read or change the store), `migrate_commands.py` or
`student_commands.py`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from gateway.cli import migrate_commands as migrate
from gateway.cli import process_commands as proc
from gateway.cli import store_commands as store
from gateway.cli import student_commands as students
from policies.settings import PINS

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="slimgate",
        description="OpenAI-compatible gateway that distills small models from your traffic.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, func: Command, config: bool = True,
                description: str | None = None) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help, description=description or help)
        if config:
            s.add_argument("--config", help="TOML config file (default: $SLIMGATE_CONFIG)")
        s.set_defaults(func=func)
        return s

    s = command("serve", "run the gateway (and the distill worker beside it)", proc.serve)
    s.add_argument("--host", help="bind address (overrides server.host)")
    s.add_argument("--port", type=int, help="port (overrides server.port)")
    s.add_argument("--no-worker", action="store_true", help="do not start the distill worker")
    s.add_argument("--workers", type=int, default=1, metavar="N",
                   help="gateway processes sharing the port (default: 1); the distill "
                        "worker still runs once")

    s = command("worker", "run the distill loop: discover, train, gate", proc.worker)
    s.add_argument("--once", action="store_true", help="one distill pass, then exit")
    s.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)  # set by `serve`

    s = command("distill", "curate, discover, train and evaluate tasks once", store.distill)
    s.add_argument("--task", help="only this task id")
    s = command("tasks", "list tasks: stage, data, held-out result, student; or rename one",
                store.tasks)
    s.add_argument("action", nargs="?", choices=["rename"], help="rename TASK NAME: a name "
                   "of yours, shown everywhere and kept across re-discovery")
    s.add_argument("task", nargs="?", help="the task id (rename)")
    s.add_argument("name", nargs="?", help="the new name (rename)")
    for name, what in (("promote", "move a task one stage or canary step forward"),
                       ("rollback", "send a task back to observe (teacher serves all)")):
        s = command(name, what, store.override)
        s.add_argument("task")
        s.add_argument("--reason", default="", help="recorded in the audit log")
    s = command("pin", "pin a task to the teacher or force its student", store.override)
    s.add_argument("task")
    s.add_argument("--to", choices=list(PINS), default="teacher")
    s = command("unpin", "remove a task's pin", store.override)
    s.add_argument("task")
    s = command("prune", "delete old student versions from disk (serving ones are kept)",
                store.prune)
    s.add_argument("--keep", type=int, default=3, help="newest versions kept per task")
    command("maintain", "prepare PostgreSQL day partitions and drop traffic older than "
            "store.retention_days (the leading worker does it hourly)", store.maintain)
    s = command("report", "shadow-eval report: terminal tables, --html, --json", store.report)
    s.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    s.add_argument("--json", action="store_true", help="print the report as JSON instead")
    s.add_argument("--since", help="only traffic since: unix seconds, or 90m / 24h / 7d back")
    s.add_argument("--worst", type=int, default=10, help="worst disagreements shown per task")
    s.add_argument("--imported", action="store_true", help="count history brought in by "
                   "`traces import` as traffic too")

    s = command("traces", "export recorded teacher answers, or import existing ones",
                store.traces)
    actions = s.add_subparsers(dest="action", required=True)
    e = actions.add_parser("export", help="write recorded teacher answers as JSONL traces")
    e.add_argument("--config", default=argparse.SUPPRESS, help="TOML config file")
    e.add_argument("--out", required=True, help="JSONL file to write")
    e.add_argument("--task", help="only this task id")
    e.add_argument("--model", help="only this requested model")
    i = actions.add_parser(
        "import", help="record existing exchanges as teacher traffic (docs/migrating.md)",
        description="Record exchanges from slimgate traces, {request, response} pairs, OpenAI "
                    "fine-tuning JSONL or OpenAI Batch API input + output files.")
    i.set_defaults(func=migrate.traces_import)
    i.add_argument("files", nargs="+", metavar="FILE", help="JSONL files (format per file)")
    i.add_argument("--config", default=argparse.SUPPRESS, help="TOML config file")
    i.add_argument("--tenant", help="the tenant (server.tenants) or, without tenants, the key "
                   "id the history belongs to")
    i.add_argument("--model", help="model name recorded where a request names none "
                   "(fine-tuning lines; default: imported)")
    i.add_argument("--progress", action="store_true", help="show progress on stderr even "
                   "when it is not a terminal")
    s = command("config", "convert another gateway's config", migrate.config_from_litellm,
                config=False)
    s.add_argument("action", choices=["from-litellm"])
    s.add_argument("file", help="LiteLLM proxy config (YAML) with a model_list")
    s.add_argument("--out", help="TOML file to write (default: standard output)")

    s = command("students", "export a student as a self-contained directory (Hugging Face "
                "weights, tokenizer, chat template, copy-slot recipe, model card)", students.export)
    s.add_argument("action", choices=["export"])
    s.add_argument("task", help="the task id (see `slimgate tasks`)")
    s.add_argument("--version", type=int, help="student version (default: the one in play, "
                   "else the newest that passed)")
    s.add_argument("--out", required=True, help="directory to write (new or empty)")
    s.add_argument("--merge", action="store_true", help="merge a LoRA adapter into its base")
    s.add_argument("--force", action="store_true", help="export a student that never passed "
                   "its gate")

    s = command("replay-teacher", "serve recorded answers as an OpenAI-compatible teacher",
                proc.replay_teacher, config=False,
                description="Answer /v1/chat/completions from recorded traces (JSONL of "
                            '{"request", "response"}; `slimgate traces export` writes them).')
    s.add_argument("--from", dest="source", required=True, metavar="TRACES.jsonl",
                   help="recorded traces to answer from")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=8090, help="port (default: 8090)")
    s.add_argument("--latency-ms", type=float, default=400.0,
                   help="delay before the answer or first token (default: 400)")
    s.add_argument("--ms-per-token", type=float, default=8.0,
                   help="generation time per completion token (default: 8)")
    s.add_argument("--jitter", type=float, default=0.25,
                   help="delays vary by up to this fraction (default: 0.25)")
    s.add_argument("--seed", type=int, default=0, help="seed of the jitter (default: 0)")

    s = command("demo", "run the whole loop offline on a synthetic agent workload", proc.demo,
                config=False)
    s.add_argument("--fast", action="store_true", help="a shorter run (fewer requests, "
                   "shorter training)")
    s.add_argument("--dir", default="demo-run", help="where the demo keeps its store, "
                   "students and report")
    return p
