"""Tail latency and throughput of `slimgate serve` under wrk, to an nginx upstream on loopback.

nginx answers every chat completion with one static JSON body (no Python on that side), wrk
POSTs a chat request through `slimgate serve --no-worker` for `--duration` seconds at each
concurrency, and this prints req/s, p50/p99/p99.9 and the event loop's worst lag (from
/metrics). `--processes 1,2,4` repeats the runs with `serve --workers N`. Needs wrk and nginx
(Debian: `apt-get install wrk nginx`); without them it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from gateway.offline.local import free_port, wait_ready

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench"
BODY = {"model": "bench", "messages": [
    {"role": "system", "content": "You classify support tickets into billing, bug or other."},
    {"role": "user", "content": "I was charged twice for my subscription this month."}],
    "max_tokens": 16}
ANSWER = {"id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000,
          "model": "bench", "choices": [{"index": 0, "finish_reason": "stop", "message": {
              "role": "assistant", "content": "billing"}}],
          "usage": {"prompt_tokens": 31, "completion_tokens": 1, "total_tokens": 32}}

# wrk's `done` prints what --latency does not: p99.9 (latency values are microseconds).
WRK_LUA = """
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d %%d %%d\\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def start_nginx(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/nginx-body;
  proxy_temp_path {tmp}/nginx-proxy;
  fastcgi_temp_path {tmp}/nginx-fastcgi;
  uwsgi_temp_path {tmp}/nginx-uwsgi;
  scgi_temp_path {tmp}/nginx-scgi;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      default_type application/json;
      return 200 '{json.dumps(ANSWER)}';
    }}
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp), "-e",
                             str(tmp / "nginx-error.log")])
    wait_ready(f"http://127.0.0.1:{port}/v1/chat/completions", proc, timeout_s=10)
    return proc, f"http://127.0.0.1:{port}/v1"


def start_slimgate(upstream: str, tmp: Path, workers: int, root: Path,
                   env_extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cfg = tmp / f"slimgate-{port}.toml"
    cfg.write_text(f"""
[server]
host = "127.0.0.1"
port = {port}
api_keys_env = "BENCH_KEYS"
log_level = "warning"
metrics_public = true
[store]
path = "{tmp / f'bench-{port}.db'}"
[[models]]
name = "bench"
provider = "openai"
base_url = "{upstream}"
max_retries = 0
""")
    env = {**os.environ, "BENCH_KEYS": KEY, "PYTHONPATH": str(root), **env_extra}
    cmd = [sys.executable, "-m", "gateway.cli", "serve", "--no-worker", "--config", str(cfg)]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env, cwd=root)
    wait_ready(f"http://127.0.0.1:{port}/readyz", proc, timeout_s=120)
    return proc, f"http://127.0.0.1:{port}"


def run_wrk(url: str, lua: Path, concurrency: int, duration: int,
            threads: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t", str(min(threads, concurrency)), "-c", str(concurrency), "-d", f"{duration}s",
         "--timeout", "10s", "-s", str(lua), f"{url}/v1/chat/completions"],
        capture_output=True, text=True, check=True).stdout
    m = re.search(r"^RESULT (.*)$", out, re.M)
    if not m:
        raise RuntimeError(f"wrk printed no RESULT line:\n{out}")
    n, dur_us, p50, p99, p999, mx, bad, errs = (int(x) for x in m.group(1).split())
    return {"rps": n / (dur_us / 1e6), "p50": p50 / 1000, "p99": p99 / 1000,
            "p99.9": p999 / 1000, "max": mx / 1000, "non2xx": bad, "errors": errs, "n": n}


def scrape(url: str, times: int) -> dict[str, float]:
    """The worst loop lag and GC pause any answering process reports (with several processes,
    each scrape reaches one of them; `times` scrapes on fresh connections reach most), and the
    last answering process's GC counts and pause sums by generation, and lag samples > 20 ms."""
    out: dict[str, float] = {}
    for _ in range(times):
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
            text = r.read().decode()
        for name in ("slimgate_event_loop_lag_max_seconds", "slimgate_gc_pause_max_seconds",
                     "slimgate_event_loop_lag_on_cpu_max_seconds"):
            for m in re.finditer(rf"^{name} (\S+)$", text, re.M):
                out[name] = max(out.get(name, 0.0), float(m.group(1)))
        for m in re.finditer(r'^slimgate_gc_pause_seconds_(count|sum){generation="(\d)"} (\S+)$',
                             text, re.M):
            out[f"gc{m.group(2)}_{m.group(1)}"] = float(m.group(3))
        total = re.search(r"^slimgate_event_loop_lag_seconds_count (\S+)$", text, re.M)
        under = re.search(r'^slimgate_event_loop_lag_seconds_bucket{le="0.02"} (\S+)$', text, re.M)
        if total and under:
            out["lag_over_20ms"] = float(total.group(1)) - float(under.group(1))
    return out


def gc_summary(before: dict[str, float], after: dict[str, float], seconds: float) -> str:
    """Collections per second and mean/max pause by generation between two scrapes."""
    parts = []
    for g in "012":
        n = after.get(f"gc{g}_count", 0) - before.get(f"gc{g}_count", 0)
        total = after.get(f"gc{g}_sum", 0) - before.get(f"gc{g}_sum", 0)
        parts.append(f"gen{g}: {n / seconds:.1f}/s, mean {total / n * 1000 if n else 0:.2f} ms")
    stalls = after.get("lag_over_20ms", 0) - before.get("lag_over_20ms", 0)
    return "; ".join(parts) + f"; loop-lag samples > 20 ms: {stalls:.0f}"


def uptime() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=30, help="seconds per wrk run (default 30)")
    ap.add_argument("--concurrency", default="16,64", help="wrk connections, comma-separated")
    ap.add_argument("--processes", default="1", help="`serve --workers` values, comma-separated")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    ap.add_argument("--warmup", type=int, default=3, help="seconds of wrk before measuring")
    ap.add_argument("--root", default=str(ROOT),
                    help="checkout whose slimgate is run (e.g. a git worktree of an old commit)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra environment for slimgate (e.g. SLIMGATE_GC_FREEZE=0)")
    args = ap.parse_args()
    missing = [t for t in ("wrk", "nginx") if shutil.which(t) is None]
    if missing:
        print(f"tail_latency: skipped, {' and '.join(missing)} not installed "
              "(Debian: apt-get install wrk nginx)")
        return
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env_extra = dict(e.split("=", 1) for e in args.env)
    tmp = Path(tempfile.mkdtemp(prefix="slimgate-tail-"))
    lua = tmp / "chat.lua"
    lua.write_text(WRK_LUA % (json.dumps(BODY), KEY))
    nginx, upstream = start_nginx(tmp)
    rows = []
    try:
        print(f"load average before: {uptime()}", flush=True)
        for workers in (int(p) for p in args.processes.split(",")):
            gw, url = start_slimgate(upstream, tmp, workers, Path(args.root), env_extra)
            try:
                if args.warmup:
                    run_wrk(url, lua, 16, args.warmup, args.threads)
                lag = scrape(url, 8 * workers)  # the max gauges restart at each scrape
                for conc in (int(c) for c in args.concurrency.split(",")):
                    before = lag
                    r = run_wrk(url, lua, conc, args.duration, args.threads)
                    lag = scrape(url, 8 * workers)
                    rows.append((workers, conc, r, lag))
                    print(f"processes={workers} c={conc}: {r} load={uptime()}", flush=True)
                    if workers == 1:
                        print(f"  {gc_summary(before, lag, args.duration)}", flush=True)
            finally:
                gw.terminate()
                gw.wait(60)
        print(f"\n{'procs':>5}{'conc':>5}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}"
              f"{'p99.9 ms':>9}{'max ms':>8}{'lag max ms':>11}{'on cpu':>7}{'gc max ms':>10}"
              f"{'errors':>7}")
        for workers, conc, r, lag in rows:
            def ms(name: str, lag: dict[str, float] = lag) -> str:
                return f"{lag[name] * 1000:.1f}" if name in lag else "n/a"
            print(f"{workers:>5}{conc:>5}{r['rps']:>8.0f}{r['p50']:>8.2f}{r['p99']:>8.2f}"
                  f"{r['p99.9']:>9.2f}{r['max']:>8.1f}"
                  f"{ms('slimgate_event_loop_lag_max_seconds'):>11}"
                  f"{ms('slimgate_event_loop_lag_on_cpu_max_seconds'):>7}"
                  f"{ms('slimgate_gc_pause_max_seconds'):>10}"
                  f"{int(r['non2xx'] + r['errors']):>7}")
        print(f"load average after: {uptime()}")
    finally:
        nginx.terminate()
        nginx.wait(10)
        time.sleep(0.2)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
