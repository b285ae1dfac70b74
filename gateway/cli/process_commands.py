"""The `slimgate` verbs that run a process: serve, worker, replay-teacher, demo.

`serve` injects the student loader from `distill` into the gateway, so the request path
itself never imports the learning package; `worker` imports `distill` when it runs.
`serve --workers N` runs N gateway processes on one port (docs/deploy.md, process model).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from gateway.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from fastapi import FastAPI


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Third-party debug logs echo request bodies and call parameters (keys included):
    # they stay at WARNING whatever our own level is.
    for noisy in ("LiteLLM", "litellm", "aiosqlite", "httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def load(args: argparse.Namespace) -> Config:
    """The config named by --config (else $SLIMGATE_CONFIG); a bad one exits with status 2."""
    try:
        return load_config(args.config)
    except ConfigError as e:
        print(f"slimgate: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from distill.loading import load_student
    from gateway.app import create_app
    from gateway.upstream.litellm_backend import check_litellm_models

    if args.workers < 1:
        print("slimgate: --workers needs a number of processes, 1 or more", file=sys.stderr)
        return 2
    config = load(args)
    setup_logging(config.server.log_level)
    try:
        check_litellm_models(config)  # before uvicorn: a clean exit 2
    except ConfigError as e:
        print(f"slimgate: {e}", file=sys.stderr)
        return 2
    path = args.config or os.environ.get("SLIMGATE_CONFIG")
    options: dict[str, Any] = dict(
        host=args.host or config.server.host,
        port=args.port or config.server.port,
        log_level=config.server.log_level,
        access_log=False,  # per-request logs cost throughput; /metrics and the store have it
        # X-Forwarded-For is the app's to read, from server.trusted_proxies only: uvicorn's
        # default believes it from 127.0.0.1, where Docker's port proxy and a local LB connect
        proxy_headers=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=30,
    )
    if args.workers == 1:
        uvicorn.run(create_app(config, config_path=None if args.no_worker else path,
                               load_student=load_student), **options)
        return 0
    return serve_processes(config, path, args.workers, start_distill=not args.no_worker,
                           options=options)


def serve_processes(config: Config, path: str | None, processes: int, *, start_distill: bool,
                    options: dict[str, Any]) -> int:
    """`serve --workers N`: uvicorn's supervisor binds the port once and spawns N processes
    that accept on it, each building its app with `app_from_env` (own store connection and
    recorder; SQLite takes their writes one transaction at a time, waiting on busy_timeout).
    The supervisor replaces a process that dies; the distill worker runs once, beside it."""
    import uvicorn

    from gateway.worker_process import start_worker, stop_worker

    if not path:
        print("slimgate: serve --workers needs a config file (--config or $SLIMGATE_CONFIG): "
              "each process reads it", file=sys.stderr)
        return 2
    os.environ["SLIMGATE_CONFIG"] = os.path.abspath(path)  # spawned processes inherit it
    _migrate_store(config)
    worker = start_worker(path, config) if start_distill else None
    try:
        uvicorn.run("gateway.cli.process_commands:app_from_env", factory=True,
                    workers=processes, **options)
    finally:
        stop_worker(worker)
    return 0


def _migrate_store(config: Config) -> None:
    """Create or migrate the store once, before the processes start, so an unreachable or
    too-new store fails here with one message rather than in N processes."""
    from gateway.store.db import connect

    connect(config.store).close()


def app_from_env() -> FastAPI:
    """The app of one `serve --workers` process, from $SLIMGATE_CONFIG (uvicorn calls this in
    each process it spawns). It never starts a distill worker: the supervisor runs the one."""
    from distill.loading import load_student
    from gateway.app import create_app

    config = load_config(os.environ["SLIMGATE_CONFIG"])
    setup_logging(config.server.log_level)
    return create_app(config, config_path=None, load_student=load_student)


def worker(args: argparse.Namespace) -> int:
    from distill.worker import run_worker

    config = load(args)
    setup_logging(config.server.log_level)
    run_worker(config, once=args.once, parent_pid=args.parent_pid)
    return 0


def replay_teacher(args: argparse.Namespace) -> int:
    from gateway.offline.replay_teacher import serve_forever

    return serve_forever(args.source, host=args.host, port=args.port,
                         latency_ms=args.latency_ms, ms_per_token=args.ms_per_token,
                         jitter=args.jitter, seed=args.seed)


def demo(args: argparse.Namespace) -> int:
    from gateway.offline.demo import DemoDirError, run_demo

    try:
        return int(run_demo(fast=args.fast, directory=args.dir))
    except DemoDirError as e:
        print(f"slimgate demo: {e}", file=sys.stderr)
        return 2
