"""How much latency and throughput does slimgate cost? Direct vs through the gateway.

Starts a fast fake upstream on loopback, then sends the same chat requests directly and
through `slimgate serve` (recording on; `slimgate-otel`: also OpenTelemetry spans to an
OTLP sink), at concurrency 1 and 16, and prints req/s and
p50/p99 latency and the latency slimgate adds. The same request through `/v1/responses`
is measured too: native (to the upstream's own /v1/responses, against it directly) and
translated (to chat completions, against direct chat). If LiteLLM's proxy is installed
(`pip install 'litellm[proxy]'`), it is measured in the same run on the same upstream.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from gateway.offline.local import free_port, wait_ready

ROOT = Path(__file__).resolve().parent.parent
BODY = {"model": "bench", "messages": [
    {"role": "system", "content": "You classify support tickets into billing, bug or other."},
    {"role": "user", "content": "I was charged twice for my subscription this month."}],
    "max_tokens": 16}
# The same request through the Responses API.
RESPONSES_BODY = {"model": "bench", "instructions": BODY["messages"][0]["content"],
                  "input": BODY["messages"][1]["content"], "max_output_tokens": 16}


async def load(url: str, n: int, concurrency: int, key: str | None,
               body: dict[str, Any]) -> tuple[float, list[float]]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    lat: list[float] = []
    todo = iter(range(n))
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as s:
        async def worker() -> None:
            for _ in todo:
                t = time.perf_counter()
                async with s.post(url, json=body, headers=headers) as r:
                    await r.read()
                    assert r.status == 200, r.status
                lat.append(time.perf_counter() - t)

        for _ in range(min(50, n)):  # warm-up: connections, caches
            async with s.post(url, json=body, headers=headers) as r:
                await r.read()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return n / elapsed, lat


async def interleaved(targets: list[tuple[str, str, str | None, dict[str, Any], str]],
                      n: int) -> dict[str, list[float]]:
    """Concurrency 1, one request to each target in turn, n rounds: every target sees the
    same moments of a busy machine, so their difference is the gateway's, not the noise's."""
    lat: dict[str, list[float]] = {t[0]: [] for t in targets}
    async with aiohttp.ClientSession() as s:
        for i in range(n + 50):  # the first 50 rounds warm up
            for name, url, key, body, _ in targets:
                headers = {"authorization": f"Bearer {key}"} if key else {}
                t = time.perf_counter()
                async with s.post(url, json=body, headers=headers) as r:
                    await r.read()
                    assert r.status == 200, (name, r.status)
                if i >= 50:
                    lat[name].append(time.perf_counter() - t)
    return lat


def pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100)[int(q) - 1] * 1000 if len(xs) > 1 else xs[0] * 1000


def start_slimgate(
    upstream: str, tmp: Path, key: str, durability: str = "async", telemetry: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    name = durability + ("-otel" if telemetry else "")
    # OpenTelemetry on: spans to the fake upstream's OTLP sink (/v1/traces)
    otel = (f'[telemetry]\notlp_endpoint = "{upstream.removesuffix("/v1")}"\n'
            if telemetry else "")
    cfg = tmp / f"bench-{name}.toml"
    cfg.write_text(f"""
[server]
port = {port}
api_keys_env = "BENCH_KEYS"
log_level = "warning"
[store]
path = "{tmp / f'bench-{name}.db'}"
durability = "{durability}"
{otel}[[models]]
name = "bench"
provider = "openai"
base_url = "{upstream}"
max_retries = 0
[[models]]
name = "bench-native"
model = "bench"
provider = "openai"
base_url = "{upstream}"
responses = "native"
max_retries = 0
""")
    env = {**os.environ, "BENCH_KEYS": key}
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg)],
                            env=env, cwd=ROOT)
    wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
    return proc, f"http://127.0.0.1:{port}/v1"


def start_litellm_proxy(upstream: str, tmp: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    exe = shutil.which("litellm") or str(Path(sys.executable).parent / "litellm")
    try:
        import litellm.proxy.proxy_server  # noqa: F401
    except Exception:
        return None
    port = free_port()
    cfg = tmp / "litellm.yaml"
    cfg.write_text(f"""model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: {upstream}
      api_key: none
""")
    proc = subprocess.Popen([exe, "--config", str(cfg), "--port", str(port), "--num_workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/health/liveliness", proc, timeout_s=120)
    except RuntimeError:
        proc.kill()
        return None
    return proc, f"http://127.0.0.1:{port}/v1/chat/completions"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000, help="requests per run at c=16 (0: skip)")
    ap.add_argument("--serial", type=int, default=500, help="requests per run at c=1 (0: skip)")
    ap.add_argument("--interleaved", type=int, default=1000,
                    help="rounds of the interleaved concurrency-1 comparison (0: skip)")
    ap.add_argument("--only", default="", help="comma-separated target names to run "
                    "(direct ones always run); default: all")
    args = ap.parse_args()
    only = {t for t in args.only.split(",") if t}
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    tmp = Path(tempfile.mkdtemp(prefix="slimgate-bench-"))
    up = subprocess.Popen([sys.executable, "-m", "tests.fake_upstream"], cwd=ROOT,
                          stdout=subprocess.PIPE)
    assert up.stdout is not None
    upstream = f"http://127.0.0.1:{int(up.stdout.readline())}/v1"
    procs = [up]
    native_body = {**RESPONSES_BODY, "model": "bench-native"}
    # (name, url, gateway key, body, the direct target its overhead is measured against)
    targets: list[tuple[str, str, str | None, dict[str, Any], str]] = [
        ("direct", f"{upstream}/chat/completions", None, BODY, "direct"),
        ("direct-responses", f"{upstream}/responses", None, RESPONSES_BODY, "direct-responses"),
    ]

    def wanted(name: str) -> bool:
        return not only or name in only

    try:
        key = "sk-bench"
        gw, gw_url = start_slimgate(upstream, tmp, key)
        procs.append(gw)
        targets += [
            ("slimgate", f"{gw_url}/chat/completions", key, BODY, "direct"),
            ("resp-translated", f"{gw_url}/responses", key, RESPONSES_BODY, "direct"),
            ("resp-native", f"{gw_url}/responses", key, native_body, "direct-responses"),
        ]
        if wanted("slimgate-sync"):
            gw_sync, sync_url = start_slimgate(upstream, tmp, key, "sync")
            procs.append(gw_sync)
            targets.append(("slimgate-sync", f"{sync_url}/chat/completions", key, BODY,
                            "direct"))
        if wanted("slimgate-otel"):
            gw_otel, otel_url = start_slimgate(upstream, tmp, key, telemetry=True)
            procs.append(gw_otel)
            targets.append(("slimgate-otel", f"{otel_url}/chat/completions", key, BODY,
                            "direct"))
        lp = start_litellm_proxy(upstream, tmp) if wanted("litellm-proxy") else None
        if lp:
            procs.append(lp[0])
            targets.append(("litellm-proxy", lp[1], None, BODY, "direct"))
        results: dict[tuple[str, int], tuple[float, float, float]] = {}
        for name, url, k, body, _ in targets:
            if not name.startswith("direct") and not wanted(name):
                continue
            for conc, n in ((1, args.serial), (16, args.requests)):
                if n == 0:  # 0 skips the run (e.g. only the interleaved comparison)
                    continue
                rps, lat = asyncio.run(load(url, n, conc, k, body))
                results[(name, conc)] = (rps, pct(lat, 50), pct(lat, 99))
        baseline = {name: base for name, _, _, _, base in targets}
        print(f"\n{'target':<18}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
              f"{'added p50':>11}{'added p99':>11}")
        for (name, conc), (rps, p50, p99) in results.items():
            base = results[(baseline[name], conc)]
            print(f"{name:<18}{conc:>5}{rps:>10.0f}{p50:>9.2f}{p99:>9.2f}"
                  f"{p50 - base[1]:>11.2f}{p99 - base[2]:>11.2f}")
        if args.interleaved:
            chosen = [t for t in targets if (t[0].startswith("direct") or wanted(t[0]))
                      and t[0] != "litellm-proxy"]
            lat = asyncio.run(interleaved(chosen, args.interleaved))
            print(f"\ninterleaved, concurrency 1, {args.interleaved} rounds\n"
                  f"{'target':<18}{'p50 ms':>9}{'p99 ms':>9}{'added p50':>11}{'added p99':>11}")
            for name, xs in lat.items():
                base = lat[baseline[name]]
                print(f"{name:<18}{pct(xs, 50):>9.3f}{pct(xs, 99):>9.3f}"
                      f"{pct(xs, 50) - pct(base, 50):>11.3f}{pct(xs, 99) - pct(base, 99):>11.3f}")
        time.sleep(0.5)
        con = sqlite3.connect(tmp / "bench-async.db")
        rows = con.execute("SELECT COUNT(*) FROM exchanges").fetchone()
        print(f"\nslimgate recorded {rows[0]} exchanges (recording on, async batched writes);"
              f" slimgate-sync commits each record before its reply")
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
