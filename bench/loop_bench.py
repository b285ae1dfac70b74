"""The loop benchmark (issue 19): how fast a real `slimgate serve` moves public-data tasks to
students, how much traffic they take, and whether any invalid answer reaches a client.

A replay teacher serves the public gold answers (bench/loop_workload.py: SNIPS tool calls,
labels and JSON, τ²-bench/AgentDojo first tool calls, FreshQA facts). `slimgate serve` runs
with its worker and the default config (only the store, ports, teacher address and students
folder are set). An agent sends the workload through it with the official `openai` SDK at a
steady rate; the store says when each task trained and moved, `x-slimgate-backend` who
answered, and bench/loop_check.py whether each answer honours its request's contract.

    nice -n 10 python bench/loop_bench.py --variant repeated [--minutes 15] [--rate 10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench.agent_data import DataMissing, freshqa, load_all  # noqa: E402
from bench.loop_check import matches_gold, violation  # noqa: E402
from bench.loop_report import Sent, print_table, snapshot, summarize  # noqa: E402
from bench.loop_workload import Item, Sources, pools, repetition, schedule, traces  # noqa: E402
from gateway.fingerprint import request_key  # noqa: E402
from gateway.offline.local import free_port, gateway_toml, wait_ready  # noqa: E402

MODEL = "gpt-4o-mini"
KEY = "sk-slimgate-loop-bench"  # a throwaway key for the bench's own loopback gateway
SNIPS_DEFAULT = "/work/.mirror/snipsco+nlu-benchmark/repo"


def load_sources(snips_root: str) -> Sources:
    from bench.snips_workload import utterances

    root = Path(snips_root)
    if not root.exists():
        raise DataMissing(f"no SNIPS checkout at {root}: pass --snips, a work tree or bare git "
                          "dir of github.com/snipsco/nlu-benchmark")
    _, tau2, dojo = load_all()
    return Sources(utterances(root, "train_full"), [*tau2, *dojo], freshqa())


def start_gateway(d: Path, teacher_url: str) -> tuple[subprocess.Popen[bytes], int]:
    """`slimgate serve` with its worker; only store, ports, teacher and students dir set."""
    port = free_port()
    config = d / "config.toml"
    config.write_text(gateway_toml(
        port=port, store=d / "slimgate.db", keys_env="SLIMGATE_LOOP_KEYS", model=MODEL,
        base_url=teacher_url, more=f'[distill]\nstudents_dir = "{d / "students"}"\n'))
    env = {**os.environ, "SLIMGATE_LOOP_KEYS": KEY, "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "PYTHONPATH": str(ROOT)}
    log = (d / "gateway.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config",
                             str(config)], env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    return proc, port


def stop_gateway(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL to its own process group (the worker too) if anything lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    with contextlib.suppress(ProcessLookupError):  # the group is ours: start_new_session
        os.killpg(proc.pid, signal.SIGKILL)


def send(client: Any, item: Item, s: Sent) -> None:
    started = time.perf_counter()
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, extra_headers={"x-request-id": f"lb-{s.i}"}, **item.request)
        msg = raw.parse().choices[0].message.model_dump(exclude_none=True)
        s.backend = raw.headers.get("x-slimgate-backend", "?")
        s.task = raw.headers.get("x-slimgate-task", "")
        s.invalid = violation(item.request, msg) or ""
        s.gold = matches_gold(msg, item.answer)
    except Exception as e:  # counted and reported, never retried: the client saw it
        s.error = f"{type(e).__name__}: {str(e)[:160]}"
    s.latency_ms = (time.perf_counter() - started) * 1000


def progress(db: Path, sent: list[Sent], t0: float) -> None:
    snap = snapshot(str(db))
    done = [s for s in sent if s.backend or s.error]
    stages = ", ".join(f"{t['label'][:20]} {t['stage']}" for t in snap["tasks"]) or "no tasks"
    print(f"[{time.time() - t0:5.0f}s] {len(done)} answered, "
          f"{sum(s.backend == 'student' for s in done)} by students, "
          f"{sum(bool(s.error) for s in done)} errors; {stages}", flush=True)


def drive(client: Any, items: list[Item], a: argparse.Namespace,
          db: Path) -> tuple[list[Sent], float]:
    """Send `items` at `a.rate` per second, at most `a.concurrency` in flight, until time is up."""
    slots = threading.Semaphore(a.concurrency)
    sent: list[Sent] = []
    t0 = time.time()
    deadline, last = t0 + a.minutes * 60, t0

    def one(item: Item, s: Sent) -> None:
        try:
            send(client, item, s)
        finally:
            slots.release()

    with ThreadPoolExecutor(a.concurrency) as pool:
        for i, item in enumerate(items):
            due = t0 + i / a.rate
            if due >= deadline:
                break
            time.sleep(max(0.0, due - time.time()))
            slots.acquire()  # bounded concurrency: a slow gateway lowers the rate, visibly
            s = Sent(i, item.kind, time.time() - t0, key=request_key(item.request))
            sent.append(s)
            pool.submit(one, item, s)
            if time.time() - last >= a.progress_s:
                last = time.time()
                progress(db, sent, t0)
    return sent, t0


def main(a: argparse.Namespace) -> int:
    from openai import OpenAI

    from gateway.offline.replay_teacher import ReplayTeacher

    try:
        src = load_sources(a.snips)
    except DataMissing as e:
        print(f"loop_bench: {e}", file=sys.stderr)
        return 2
    by_type = pools(src, seed=a.seed)
    items = schedule(by_type, a.variant, int(a.rate * a.minutes * 60) + 1, distinct=a.distinct,
                     zipf=a.zipf, seed=a.seed)
    reps = repetition(items)
    d = Path(tempfile.mkdtemp(prefix="slimgate-loop-"))
    (d / "traces.jsonl").write_bytes(b"".join(orjson.dumps(t) + b"\n"
                                              for t in traces(items, MODEL)))
    teacher = ReplayTeacher.from_jsonl(d / "traces.jsonl", latency_ms=a.teacher_latency_ms,
                                       ms_per_token=a.teacher_ms_per_token, seed=a.seed).start()
    gateway, port = start_gateway(d, teacher.base_url)
    # A SIGTERM (pkill, a queue's timeout) unwinds through `finally`, so the gateway's own
    # process group is stopped too: Python's default action would leave it serving.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"loop bench ({a.variant}): {len(items)} requests planned over {a.minutes:g} min at "
          f"{a.rate:g}/s; repetition {reps}; files in {d}", flush=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", gateway, timeout_s=300)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0,
                        timeout=120)
        sent, t0 = drive(client, items, a, d / "slimgate.db")
        snap = snapshot(str(d / "slimgate.db"))
    finally:
        stop_gateway(gateway)
        teacher.stop()
    summary = summarize(sent, snap, t0, int(a.minutes + 0.999))
    print_table(summary)
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"loop-{a.variant}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({
        "variant": a.variant, "minutes": a.minutes, "rate": a.rate, "concurrency": a.concurrency,
        "distinct": a.distinct, "zipf": a.zipf, "seed": a.seed, "repetition": reps,
        "teacher": {"latency_ms": a.teacher_latency_ms, "ms_per_token": a.teacher_ms_per_token,
                    "served": teacher.served, "misses": teacher.misses,
                    "answers": "public gold answers, replayed"},
        "sent": len(sent), "achieved_rate": round(len(sent) / (a.minutes * 60), 2),
        **summary}, indent=1))
    print(f"\nteacher served {teacher.served} ({teacher.misses} misses); saved {path}")
    if a.keep:
        print(f"kept {d}")
    else:
        shutil.rmtree(d, ignore_errors=True)
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", choices=["repeated", "unique"], default="repeated",
                   help="repeated: a few hundred distinct requests per type, Zipf-like; "
                        "unique: mostly distinct requests")
    p.add_argument("--minutes", type=float, default=15.0, help="how long traffic runs")
    p.add_argument("--rate", type=float, default=10.0, help="requests per second, all types")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight at most")
    p.add_argument("--distinct", type=int, default=300, help="repeated: distinct per type")
    p.add_argument("--zipf", type=float, default=1.0, help="repeated: Zipf exponent")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--snips", default=SNIPS_DEFAULT, help="github.com/snipsco/nlu-benchmark "
                   "checkout (work tree or bare git dir)")
    p.add_argument("--teacher-latency-ms", type=float, default=400.0)
    p.add_argument("--teacher-ms-per-token", type=float, default=8.0)
    p.add_argument("--progress-s", type=float, default=30.0, help="seconds between status lines")
    p.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    p.add_argument("--keep", action="store_true", help="keep the store, students and log")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main(parse()))
