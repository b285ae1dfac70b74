"""The encoder student, measured: held-out agreement, training seconds and latency per task.

Runs the product's own steps on each task — curate (scrub, dedupe, hash split) for the demo
workload, `distill.encoder_student.train_encoder` under a time budget, and
`distill.evaluate.evaluate` with the live comparators — for the demo workload's tasks and,
given `--snips DIR`, the public SNIPS tool-calling workload (`bench/snips_workload.py`).
Each task is trained once per `--tune-layers` value (0 = frozen encoder). Prints a table and
writes bench/results/encoder-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEMO_TASKS = ["travel_tools", "order_extract", "ticket_triage", "intent_router", "sentiment",
              "reply_writer"]


@dataclass
class BenchConfig:
    tasks: list[str] = field(default_factory=lambda: list(DEMO_TASKS))  # demo task names
    snips: str = ""  # a checkout of snipsco/nlu-benchmark (work tree or bare git dir)
    snips_kinds: list[str] = field(default_factory=lambda: ["tools"])  # tools, label
    warm_epochs: int = 0  # cap on the heads-alone warm-up epochs (0: EncoderConfig's)
    examples: int = 600  # generated teacher exchanges per demo task, before curation
    train: int = 500  # at most this many training examples per task
    heldout: int = 200  # at most this many held-out examples per task
    budget_s: float = 120.0  # training budget per run
    tune_layers: list[int] = field(default_factory=lambda: [0, 4])
    threads: int = 2  # torch CPU threads
    seed: int = 0
    out_dir: str = str(ROOT / "bench" / "results")


def demo_split(task: str, cfg: BenchConfig) -> tuple[list[Any], list[Any], str]:
    """Curated train and held-out Examples of one demo task, and its output kind."""
    from bench.distill_bench import teacher_rows
    from distill.curate import curate
    from distill.discover import discover
    from gateway.privacy.scrub import ScrubConfig

    rows = teacher_rows(task, cfg.examples, cfg.seed)
    (found,) = discover(rows, embedder=None).tasks
    curated = curate(rows, heldout_percent=15, scrub=ScrubConfig())
    return curated.train[: cfg.train], curated.heldout[: cfg.heldout], found.kind


def snips_split(cfg: BenchConfig) -> tuple[list[Any], list[Any], str]:
    """SNIPS train utterances for training, its validation utterances held out."""
    from bench.snips_workload import work_items
    from distill.curate import Example

    def examples(split: str, n: int) -> list[Example]:
        return [Example(request_id=f"snips-{split}-{i}", seq=i, key=f"{i:08x}",
                        messages=req["messages"], tools=req["tools"], response_format=None,
                        answer=ans, tool_choice=req["tool_choice"])
                for i, (req, ans) in enumerate(work_items(Path(cfg.snips), split)[:n])]

    return examples("train", cfg.train), examples("validate", cfg.heldout), "tool_call"


def snips_label_split(cfg: BenchConfig) -> tuple[list[Any], list[Any], str]:
    """SNIPS intents as one-word labels under the loop bench's classification prompt."""
    from bench.loop_workload import LABEL_SYSTEM
    from bench.snips_workload import utterances
    from distill.curate import Example

    def examples(split: str, n: int) -> list[Example]:
        rows = utterances(Path(cfg.snips), split)
        random.Random(cfg.seed).shuffle(rows)  # the files are ordered by intent
        return [Example(request_id=f"snips-label-{split}-{i}", seq=i, key=f"{i:08x}",
                        messages=[{"role": "system", "content": LABEL_SYSTEM},
                                  {"role": "user", "content": text}],
                        tools=None, response_format=None,
                        answer={"role": "assistant", "content": intent}, tool_choice=None)
                for i, (intent, text, _) in enumerate(rows[:n])]

    return examples("train", cfg.train), examples("validate", cfg.heldout), "label"


def run(task: str, train: list[Any], heldout: list[Any], kind: str, tune: int,
        cfg: BenchConfig, work: Path) -> dict[str, Any]:
    from distill.encoder_student import EncoderStudent, can_express, train_encoder
    from distill.encoder_train import EncoderConfig
    from distill.evaluate import evaluate, request_of
    from gateway.config import Config

    ok, reason = can_express(train)
    row: dict[str, Any] = {"task": task, "kind": kind, "tune_layers": tune,
                           "train_examples": len(train), "heldout_examples": len(heldout),
                           "can_express": ok, "reason": reason}
    if not ok:
        return row
    out = work / f"{task}-{tune}"
    began = time.perf_counter()
    enc = EncoderConfig(tune_layers=tune)
    if cfg.warm_epochs:
        enc = replace(enc, warm_epochs=cfg.warm_epochs)
    info = train_encoder(train, out, budget_s=cfg.budget_s, seed=cfg.seed, cfg=enc)
    row["train_s"] = time.perf_counter() - began  # model load and saving included
    student = EncoderStudent.load(out)
    policy = Config().policy
    ev = evaluate(student, heldout, kind, confidence=policy.confidence, text_threshold=0.85,
                  batch_size=16)
    singles = []
    for ex in heldout[:50]:
        t = time.perf_counter()
        student.generate([request_of(ex, 256)])
        singles.append((time.perf_counter() - t) * 1000)
    misses = [r["detail"] for r in ev.rows if not r["agree"]]
    kinds = Counter(miss_kind(d) for d in misses)
    size = sum(p.stat().st_size for p in out.iterdir())
    row.update({"training": info["training"], "student_bytes": size,
                "evaluation": {k: ev.summary[k] for k in ("n", "agree", "agreement", "lower",
                                                          "upper", "valid_rate")},
                "single_p50_ms": statistics.median(singles),
                "single_p95_ms": sorted(singles)[int(0.95 * (len(singles) - 1))],
                "batch16_ms_per_request": ev.summary["student_p50_ms"],
                "miss_kinds": dict(kinds), "misses": misses[:5]})
    return row


def miss_kind(detail: str) -> str:
    """A comparator's detail reduced to what went wrong: the answer's shape or one value."""
    if detail.startswith(("called", "missing call", "extra call", "label")) or \
            "'intent'" in detail:
        return "wrong tool, label or intent"
    if " missing" in detail:
        return "value left out"
    if "extra " in detail:
        return "value added"
    return "value differs"


def main(cfg: BenchConfig) -> list[dict[str, Any]]:
    import torch

    torch.set_num_threads(cfg.threads)
    splits = {t: demo_split(t, cfg) for t in cfg.tasks}
    if cfg.snips and "tools" in cfg.snips_kinds:
        splits["snips_tools"] = snips_split(cfg)
    if cfg.snips and "label" in cfg.snips_kinds:
        splits["snips_label"] = snips_label_split(cfg)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task, (train, heldout, kind) in splits.items():
            for tune in cfg.tune_layers:
                row = run(task, train, heldout, kind, tune, cfg, Path(tmp))
                rows.append(row)
                print_row(row, flush=True)
                if not row["can_express"]:
                    break
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"encoder-{date.today().isoformat()}.json"
    path.write_text(json.dumps({"config": asdict(cfg), "load_avg_1m": os.getloadavg()[0],
                                "results": rows}, indent=1, default=str))
    print(f"wrote {path}")
    return rows


def print_row(row: dict[str, Any], flush: bool = False) -> None:
    if not row["can_express"]:
        print(f"{row['task']:<14} not expressible: {row['reason']}", flush=flush)
        return
    e, t = row["evaluation"], row["training"]
    print(f"{row['task']:<14} tune={row['tune_layers']} train={row['train_examples']} "
          f"epochs={t['epochs']} train_s={row['train_s']:.0f} agree={e['agreement']:.3f} "
          f"[{e['lower']:.3f},{e['upper']:.3f}] n={e['n']} valid={e['valid_rate']:.2f} "
          f"p50={row['single_p50_ms']:.1f}ms p95={row['single_p95_ms']:.1f}ms "
          f"pointable={t['pointable']:.3f} size={row['student_bytes'] / 1e6:.1f}MB "
          f"misses={row['miss_kinds']}", flush=flush)


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = BenchConfig()
    p.add_argument("--tasks", nargs="*", default=d.tasks, help="demo tasks (none: skip)")
    p.add_argument("--snips", default=d.snips, help="snipsco/nlu-benchmark checkout")
    p.add_argument("--snips-kinds", nargs="+", default=d.snips_kinds, choices=["tools", "label"])
    p.add_argument("--warm-epochs", type=int, default=d.warm_epochs)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--train", type=int, default=d.train)
    p.add_argument("--heldout", type=int, default=d.heldout)
    p.add_argument("--budget-s", type=float, default=d.budget_s)
    p.add_argument("--tune-layers", type=int, nargs="+", default=d.tune_layers)
    p.add_argument("--threads", type=int, default=d.threads)
    a = p.parse_args(argv)
    return BenchConfig(tasks=a.tasks, snips=a.snips, snips_kinds=a.snips_kinds,
                       warm_epochs=a.warm_epochs, seed=a.seed, train=a.train,
                       heldout=a.heldout, budget_s=a.budget_s, tune_layers=a.tune_layers,
                       threads=a.threads)


if __name__ == "__main__":
    main(parse_args())
