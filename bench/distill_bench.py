"""How well and how fast does a tiny student learn each task? Distillation, measured per task.

For every task of the synthetic agent workload (`gateway.offline.workload`), builds the rows
the store would hold for the teacher's answers, then runs the product's own steps on them: curate
(scrub, dedupe, hash split), fine-tune a `scratch:tiny` student under a time budget, and
evaluate it on the held-out set. Prints one table and saves it as bench/results/distill-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

TEACHER_MODEL = "gpt-4o-mini"  # priced from litellm's bundled (offline) price map
STUDENT_MODEL = "scratch:tiny"
QUICK_TASKS = ["sentiment", "order_extract"]  # a label task and a JSON task


@dataclass
class BenchConfig:
    tasks: list[str] = field(default_factory=list)  # workload task names; empty: all six
    examples: int = 400  # generated teacher exchanges per task, before curation
    budget_s: float = 90.0  # training time budget per task
    # Longest example trained on. The product default (512) would skip every travel_tools
    # example (630-820 scratch tokens each, mostly tool schemas); 1024 is the scratch context.
    max_seq_len: int = 1024
    heldout_percent: int = 15  # share held out by request hash (the product default is 10)
    seed: int = 0  # workload and training seed
    threads: int = 2  # torch CPU threads
    single: int = 8  # held-out requests also timed one at a time (batch of 1)
    quick: bool = False  # a smoke run; its JSON gets a -quick suffix, never replacing a full run
    out_dir: str = str(ROOT / "bench" / "results")  # where the JSON result goes


def teacher_rows(task: str, n: int, seed: int) -> list[dict[str, Any]]:
    """`n` exchanges of one task as the store holds them: status 200, answered by the teacher,
    tagged with the task (so discovery keeps them together, as for an explicit tag)."""
    from gateway.offline.workload import generate, to_traces

    items = generate(n, seed=seed, kinds=[task])
    return [{"request_id": f"{task}-{i}", "seq": i, "status": 200, "backend": "teacher",
             "task": task, **trace}
            for i, trace in enumerate(to_traces(items, model=TEACHER_MODEL))]


def teacher_numbers(rows: list[dict[str, Any]], ids: set[str]) -> dict[str, Any]:
    """Modelled teacher latency and estimated API cost over the rows whose id is in `ids`.

    Latency follows the replay teacher's default model (no jitter): its base latency plus its
    time per completion token, with the completion tokens recorded in the traces.
    """
    import inspect

    from gateway.cost import CostTable
    from gateway.offline.replay_teacher import ReplayTeacher

    defaults = inspect.signature(ReplayTeacher.__init__).parameters
    base_ms = float(defaults["latency_ms"].default)
    per_token_ms = float(defaults["ms_per_token"].default)
    costs = CostTable()
    latencies, dollars = [], []
    for row in rows:
        if row["request_id"] not in ids:
            continue
        usage = row["response"]["usage"]
        latencies.append(base_ms + per_token_ms * usage["completion_tokens"])
        dollars.append(costs.estimate(TEACHER_MODEL, usage["prompt_tokens"],
                                      usage["completion_tokens"]))
    known = [d for d in dollars if d is not None]
    return {
        "latency_model": f"replay teacher default: {base_ms:g} ms + {per_token_ms:g} ms/token",
        "p50_ms": statistics.median(latencies) if latencies else None,
        "usd_per_1k": 1000 * statistics.fmean(known) if known else None,
        "model": TEACHER_MODEL,
    }


def single_request_ms(student: Any, requests: list[dict[str, Any]], max_new: int) -> float | None:
    """Median wall time of answering requests one at a time (what one agent call waits)."""
    times = []
    for request in requests:
        began = time.perf_counter()
        student.generate([request], max_new_tokens=max_new)
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times) if times else None


def bench_task(task_name: str, cfg: BenchConfig, work_dir: Path) -> dict[str, Any]:
    """Curate → train → evaluate one task with the product's functions; the result row."""
    from distill.curate import curate
    from distill.discover import discover
    from distill.evaluate import evaluate, request_of
    from distill.pipeline import _token_budget
    from distill.student import Student, quiet_progress_bars
    from distill.train import train_student
    from gateway.config import Config, TrainingConfig
    from gateway.privacy.scrub import ScrubConfig

    product = Config()  # product defaults: comparator threshold, gate confidence
    policy = product.policy.for_task(task_name, task_name)
    rows = teacher_rows(task_name, cfg.examples, cfg.seed)
    # Kind and length statistics exactly as discovery records them for an explicit task.
    (task,) = discover(rows, embedder=None).tasks
    _, max_new = _token_budget(task)
    curated = curate(rows, heldout_percent=cfg.heldout_percent, scrub=ScrubConfig())
    train = [ex.as_training() for ex in curated.train]
    load_before = os.getloadavg()[0]
    training = TrainingConfig(time_budget_s=cfg.budget_s, max_seq_len=cfg.max_seq_len)
    report = train_student(train, base_model=STUDENT_MODEL, cfg=training,
                           out_dir=work_dir / task_name, seed=cfg.seed, progress=False)
    student = Student.load(work_dir / task_name)
    with quiet_progress_bars():  # free-text tasks load the sentence embedder here
        ev = evaluate(student, curated.heldout, task.kind, confidence=policy.confidence,
                      text_threshold=product.distill.text_similarity, max_tokens=max_new)
    single = single_request_ms(
        student, [request_of(ex, max_new) for ex in curated.heldout[:cfg.single]], max_new)
    s = ev.summary
    misses = Counter(r["detail"] for r in ev.rows if not r["agree"])
    return {
        "task": task_name, "kind": task.kind, "generated": len(rows),
        "train_examples": len(curated.train), "heldout_examples": len(curated.heldout),
        "dropped": dict(curated.dropped), "scrubbed": dict(curated.scrubbed),
        "max_new_tokens": max_new, "training": report.as_dict(),
        "evaluation": {k: s[k] for k in ("n", "agree", "agreement", "lower", "upper",
                                         "confidence", "valid_rate", "mean_score",
                                         "student_p50_ms", "tokens_per_s")},
        "student_single_p50_ms": single,
        "top_disagreements": [{"detail": d, "count": n} for d, n in misses.most_common(5)],
        "example_disagreement": next(({"student": r["student"], "teacher": r["teacher"]}
                                      for r in ev.rows if not r["agree"]), None),
        "gate": {"min_agreement": policy.min_agreement, "min_heldout": policy.min_heldout,
                 "passed": s["n"] >= policy.min_heldout and s["lower"] >= policy.min_agreement},
        "teacher": teacher_numbers(rows, {ex.request_id for ex in curated.heldout}),
        "student_usd_per_1k": 0.0,  # no API bill: it runs on this machine's CPU
        "load_avg_1m": {"before_training": round(load_before, 2),
                        "after_eval": round(os.getloadavg()[0], 2)},
    }


def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}" if x < 10 else f"{x:,.0f}"


def print_table(results: list[dict[str, Any]], cfg: BenchConfig, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"distillation: {STUDENT_MODEL} student per task, "
                        f"{cfg.budget_s:g} s training budget, {cfg.threads} CPU threads")
    confidence = results[0]["evaluation"]["confidence"] if results else 0.95
    columns = ("task", "kind", "train / held-out", "steps", "train s", "loss",
               f"agreement [{confidence:.0%} CI]", "valid", "student ms b8 · b1", "tok/s",
               "teacher ms", "teacher $/1k", "student $/1k")
    for col in columns:
        table.add_column(col, justify="left" if col in ("task", "kind") else "right")
    for r in results:
        ev, tr, te = r["evaluation"], r["training"], r["teacher"]
        table.add_row(
            r["task"], r["kind"], f"{r['train_examples']} / {r['heldout_examples']}",
            str(tr["steps"]), f"{tr['seconds']:.0f}", f"{tr['final_loss']:.3f}",
            f"{ev['agreement']:.2f} [{ev['lower']:.2f}, {ev['upper']:.2f}]",
            f"{ev['valid_rate']:.2f}",
            f"{_ms(ev['student_p50_ms'])} · {_ms(r['student_single_p50_ms'])}",
            _ms(ev["tokens_per_s"]), _ms(te["p50_ms"]),
            "—" if te["usd_per_1k"] is None else f"${te['usd_per_1k']:.4f}", "$0 (CPU only)")
    console = Console()
    if not console.is_terminal:  # a log file or pipe: no wrapping at 80 columns
        console = Console(width=170)
    console.print(table)
    if results:
        console.print(
            f"teacher latency: modelled, {results[0]['teacher']['latency_model']}, p50 over the "
            f"held-out requests; teacher cost: litellm's offline price of {TEACHER_MODEL} with "
            "the token counts in the traces; student: no API cost, CPU only. "
            "Student ms: p50 per request in batches of 8 (as evaluate() times them) · one "
            "request at a time. "
            f"Agreement uses the product's comparators; the gate needs the lower bound "
            f"≥ {results[0]['gate']['min_agreement']:.2f}. Examples up to {cfg.max_seq_len} "
            f"tokens, {cfg.heldout_percent}% held out. Total {seconds:.0f} s.")


def main(cfg: BenchConfig) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a model hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm's bundled prices
    # OpenMP threads that spin while waiting collapse when another busy process shares the
    # cores: measured here, 2 threads beside a test run made 6 training steps in 20 s, and
    # 110-180 with passive waits under similar load. Read when torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from gateway.offline.workload import KINDS

    torch.set_num_threads(cfg.threads)
    tasks = cfg.tasks or list(KINDS)
    unknown = [t for t in tasks if t not in KINDS]
    if unknown:
        raise SystemExit(f"unknown task(s) {unknown}; known: {list(KINDS)}")
    started = time.time()
    load_start = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="slimgate-distill-bench-") as tmp:
        for name in tasks:
            print(f"[{time.time() - started:5.0f}s] {name}: curate, train "
                  f"({cfg.budget_s:g} s budget), evaluate", flush=True)
            results.append(bench_task(name, cfg, Path(tmp)))
    seconds = time.time() - started
    print_table(results, cfg, seconds)
    out = {
        "date": date.today().isoformat(), "seconds": round(seconds, 1), "config": asdict(cfg),
        "student": STUDENT_MODEL,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "threads": cfg.threads,
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                    "load_avg_at_start": [round(x, 2) for x in load_start],
                    "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
                    "note": "other processes may have been running on this machine; the load "
                            "averages above and per task show how busy it was"},
        "results": results,
    }
    suffix = "-quick" if cfg.quick else ""
    path = Path(cfg.out_dir) / f"distill-{out['date']}{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"saved {path}")
    return out


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", metavar="TASK",
                   help="workload tasks to run (default: all six)")
    p.add_argument("--examples", type=int, default=400, help="exchanges per task (default: 400)")
    p.add_argument("--budget", type=float,
                   help="training seconds per task (default: 90; 20 with --quick)")
    p.add_argument("--max-seq-len", type=int, default=1024,
                   help="longest example trained on, in tokens (default: 1024)")
    p.add_argument("--heldout-percent", type=int, default=15,
                   help="share held out by request hash (default: 15)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: {' and '.join(QUICK_TASKS)}, 20 s budget each")
    p.add_argument("--out-dir", default=BenchConfig.out_dir, help="where the JSON goes")
    a = p.parse_args(argv)
    if not 1 <= a.heldout_percent <= 50:
        p.error("--heldout-percent must be within 1..50")
    budget = a.budget if a.budget is not None else 20.0 if a.quick else 90.0
    return BenchConfig(tasks=a.tasks or (QUICK_TASKS if a.quick else []), examples=a.examples,
                       budget_s=budget, max_seq_len=a.max_seq_len,
                       heldout_percent=a.heldout_percent, seed=a.seed, threads=a.threads,
                       quick=a.quick, out_dir=a.out_dir)


if __name__ == "__main__":
    main(parse_args())
