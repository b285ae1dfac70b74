"""The `slimgate` verbs that run a process: serve, worker, replay-teacher, demo.

`serve` injects the student loader from `distill` into the gateway, so the request path
itself never imports the learning package; `worker` imports `distill` when it runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from gateway.config import Config, ConfigError, load_config


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
    from gateway.upstream.litellm_backend import check_providers

    config = load(args)
    setup_logging(config.server.log_level)
    try:
        check_providers(config)
    except ConfigError as e:
        print(f"slimgate: {e}", file=sys.stderr)
        return 2
    path = args.config or os.environ.get("SLIMGATE_CONFIG")
    uvicorn.run(
        create_app(config, config_path=None if args.no_worker else path,
                   load_student=load_student),
        host=args.host or config.server.host,
        port=args.port or config.server.port,
        log_level=config.server.log_level,
        access_log=False,  # per-request logs cost throughput; /metrics and the store have it
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=30,
    )
    return 0


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
