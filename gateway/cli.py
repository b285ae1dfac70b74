"""The `slimgate` command. The only module that reads argv.

`serve` runs the gateway (and, by default, the distill worker beside it); `worker` runs the
loop alone; `distill` runs one pass; `tasks`, `report` and the operator overrides read and
change the store; `replay-teacher`, `traces export` and `demo` are for offline runs.
Commands that need torch import it only when they run, so `slimgate --help` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from gateway.config import Config, ConfigError, load_config


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Third-party debug logs echo request bodies and call parameters (keys included):
    # they stay at WARNING whatever our own level is.
    for noisy in ("LiteLLM", "litellm", "aiosqlite", "httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _config(args: argparse.Namespace) -> Config:
    try:
        return load_config(args.config)
    except ConfigError as e:
        print(f"slimgate: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app

    config = _config(args)
    _setup_logging(config.server.log_level)
    path = args.config or os.environ.get("SLIMGATE_CONFIG")
    uvicorn.run(
        create_app(config, config_path=None if args.no_worker else path),
        host=args.host or config.server.host,
        port=args.port or config.server.port,
        log_level=config.server.log_level,
        access_log=False,  # per-request logs cost throughput; /metrics and the store have it
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=30,
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    from distill.worker import run_worker

    config = _config(args)
    _setup_logging(config.server.log_level)
    run_worker(config, once=args.once, parent_pid=args.parent_pid)
    return 0


def _ops(args: argparse.Namespace) -> int:
    from gateway import cli_ops

    config = _config(args)
    return int(cli_ops.run(args, config))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="slimgate",
        description="OpenAI-compatible gateway that distills small models from your traffic.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, func: object, config: bool = True) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help, description=help)
        if config:
            s.add_argument("--config", help="TOML config file (default: $SLIMGATE_CONFIG)")
        s.set_defaults(func=func)
        return s

    s = command("serve", "run the gateway (and the distill worker beside it)", _serve)
    s.add_argument("--host", help="bind address (overrides server.host)")
    s.add_argument("--port", type=int, help="port (overrides server.port)")
    s.add_argument("--no-worker", action="store_true", help="do not start the distill worker")

    s = command("worker", "run the distill loop: discover, train, gate", _worker)
    s.add_argument("--once", action="store_true", help="one distill pass, then exit")
    s.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)  # set by `serve`

    s = command("distill", "curate, discover, train and evaluate tasks once", _ops)
    s.add_argument("--task", help="only this task id")
    command("tasks", "list tasks: stage, data, held-out result, student", _ops)
    for name, what in (("promote", "move a task one stage or canary step forward"),
                       ("rollback", "send a task back to observe (teacher serves all)")):
        s = command(name, what, _ops)
        s.add_argument("task")
        s.add_argument("--reason", default="", help="recorded in the audit log")
    s = command("pin", "pin a task to the teacher or force its student", _ops)
    s.add_argument("task")
    s.add_argument("--to", choices=["teacher", "student"], default="teacher")
    s = command("unpin", "remove a task's pin", _ops)
    s.add_argument("task")
    s = command("prune", "delete old student versions from disk (serving ones are kept)", _ops)
    s.add_argument("--keep", type=int, default=3, help="newest versions kept per task")
    s = command("report", "shadow-eval report: terminal tables, --html, --json", _ops)
    s.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    s.add_argument("--json", action="store_true", help="print the report as JSON instead")
    s.add_argument("--since", help="only traffic since: unix seconds, or 90m / 24h / 7d back")
    s.add_argument("--worst", type=int, default=10, help="worst disagreements shown per task")

    s = command("traces", "export recorded teacher answers as JSONL traces", _ops)
    s.add_argument("action", choices=["export"])
    s.add_argument("--out", required=True, help="JSONL file to write")
    s.add_argument("--task", help="only this task id")
    s.add_argument("--model", help="only this requested model")

    s = command("replay-teacher", "serve recorded answers as an OpenAI-compatible teacher",
                _replay, config=False)
    s.add_argument("--from", dest="source", required=True, help="traces JSONL file")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8090)
    s.add_argument("--latency-ms", type=float, default=400.0, help="base latency per answer")
    s.add_argument("--ms-per-token", type=float, default=8.0, help="added per output token")

    s = command("demo", "run the whole loop offline on a synthetic agent workload", _demo,
                config=False)
    s.add_argument("--fast", action="store_true", help="a shorter run (fewer requests, "
                   "shorter training)")
    s.add_argument("--dir", default="demo-run", help="where the demo keeps its store, "
                   "students and report")
    return p


def _replay(args: argparse.Namespace) -> int:
    from gateway.replay_teacher import run

    return int(run(args))


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    return int(run_demo(fast=args.fast, directory=args.dir))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Idle OpenMP threads sleep instead of spinning: the gateway's students and the worker's
    # training share few cores, and two spinning pools slow each other ~20x (measured).
    # Set before torch is imported; inherited by the worker subprocess.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        code: int = args.func(args)
    except SystemExit as e:  # a config error, already explained on stderr
        return int(e.code or 0)
    return code


if __name__ == "__main__":
    sys.exit(main())
