"""A/B of the gateway's added latency: another checkout vs this one, telemetry off and on.

Three gateways (`--no-worker`: the distill worker would train on the bench traffic) behind
one fake upstream: `--base` (a checkout of another commit, e.g. `git worktree add /tmp/base
main`), this tree with `[telemetry]` off, and this tree sending spans to the fake upstream's
OTLP sink. Interleaved at concurrency 1 (each round hits every target once, in a shuffled
order), so all three see the same moments of a busy machine; then throughput at 16.

    python bench/overhead_ab.py --base /tmp/base [--rounds 2000] [--repeats 3] [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench.gateway_overhead as g  # noqa: E402

HERE = Path(__file__).resolve().parent.parent


def _serve_without_worker(popen: Any) -> Any:
    def start(args: list[str], *a: Any, **kw: Any) -> Any:
        return popen([*args, "--no-worker"] if "serve" in args else args, *a, **kw)
    return start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="another slimgate checkout (the 'before')")
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--requests", type=int, default=3000, help="at concurrency 16 (0: skip)")
    args = ap.parse_args()
    g.subprocess.Popen = _serve_without_worker(subprocess.Popen)  # type: ignore[assignment]
    tmp = Path(tempfile.mkdtemp(prefix="slimgate-ab-"))
    up = subprocess.Popen([sys.executable, "-m", "tests.fake_upstream"], cwd=HERE,
                          stdout=subprocess.PIPE)
    assert up.stdout is not None
    upstream = f"http://127.0.0.1:{int(up.stdout.readline())}/v1"
    procs: list[Any] = [up]
    targets: list[tuple[str, str, str | None, dict[str, Any], str]] = [
        ("direct", f"{upstream}/chat/completions", None, g.BODY, "direct")]
    try:
        for name, root, otel in (("base", Path(args.base).resolve(), False),
                                 ("telemetry-off", HERE, False), ("telemetry-on", HERE, True)):
            g.ROOT = root
            os.environ["PYTHONPATH"] = str(root)
            (tmp / name).mkdir()
            kw = {"telemetry": True} if otel else {}
            proc, url = g.start_slimgate(upstream, tmp / name, "sk-bench", **kw)
            procs.append(proc)
            targets.append((name, f"{url}/chat/completions", "sk-bench", g.BODY, "direct"))
        for rep in range(args.repeats):
            random.Random(rep).shuffle(targets)
            lat = asyncio.run(g.interleaved(targets, args.rounds))
            base = g.pct(lat["direct"], 50)
            print(f"round {rep + 1}: concurrency 1, {args.rounds} interleaved rounds")
            for name in sorted(lat):
                xs = lat[name]
                print(f"  {name:<14} p50 {g.pct(xs, 50):7.3f} ms  p99 {g.pct(xs, 99):7.3f} ms"
                      f"  added p50 {g.pct(xs, 50) - base:6.3f} ms")
        if args.requests:
            for name, url, key, body, _ in sorted(targets):
                rps, lat16 = asyncio.run(g.load(url, args.requests, 16, key, body))
                print(f"concurrency 16 {name:<14} {rps:7.0f} req/s  p50 {g.pct(lat16, 50):.2f}"
                      f" ms  p99 {g.pct(lat16, 99):.2f} ms")
    finally:
        for p in reversed(procs):  # the gateways first: they send their last spans
            p.terminate()
            p.wait(30)


if __name__ == "__main__":
    main()
