"""The `slimgate` command: `serve` runs the gateway. The only module that reads argv."""

from __future__ import annotations

import argparse
import logging
import sys

from gateway.config import ConfigError, load_config


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app

    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"slimgate: {e}", file=sys.stderr)
        return 2
    host = args.host or config.server.host
    port = args.port or config.server.port
    logging.basicConfig(
        level=config.server.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Third-party debug logs echo request bodies and call parameters (keys included):
    # they stay at WARNING whatever our own level is.
    for noisy in ("LiteLLM", "litellm", "aiosqlite", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_level=config.server.log_level,
        access_log=False,  # per-request logs cost throughput; /metrics and the store have it
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=30,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="slimgate",
        description="OpenAI-compatible gateway that distills small models from your traffic.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--config", help="TOML config file (default: $SLIMGATE_CONFIG)")
    s.add_argument("--host", help="bind address (overrides server.host)")
    s.add_argument("--port", type=int, help="port (overrides server.port)")
    s.set_defaults(func=_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
