"""Seconds per LoRA training step of a pretrained candidate on one batch of a SNIPS task:
the shared prompt run once (`distill/shared_prefix.py`) or every row in full, float32 or
under bf16 autocast, the output head on learnt positions only or everywhere (`-allhead`).
What decided CPU training's defaults (docs/students.md). CPU seconds are printed beside wall
seconds: on a shared machine the wall time says more about the neighbours.
`--padding` counts, without running the model, the tokens an epoch computes after the
shared prompt in random batches and in length-grouped ones (as training batches them).

    nice -n 5 python bench/lora_step_time.py --modes fp32-shared fp32-shared-allhead --threads 1
    python bench/lora_step_time.py --padding --examples 500
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

MODES = ("fp32-shared", "bf16-shared", "fp32-plain", "bf16-plain", "fp32-shared-allhead")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--candidate", default=None, help="a .gguf file or HF directory "
                   "(default: the installed SmolLM2-135M-Instruct)")
    p.add_argument("--task", default="snips_json", help="snips_json | snips_tools | snips_label")
    p.add_argument("--snips", default="/work/.mirror/snipsco+nlu-benchmark/repo")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=2, help="timed steps per mode (the first warms)")
    p.add_argument("--modes", nargs="+", default=list(MODES[:2]), choices=MODES,
                   help="the plain modes need the whole batch's activations: 22 GB at 16 x 533")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--padding", action="store_true", help="count padded tokens per epoch only")
    p.add_argument("--examples", type=int, default=500, help="rows --padding counts")
    args = p.parse_args(argv)

    import torch
    from peft import LoraConfig, get_peft_model

    import distill.shared_prefix
    from bench.loop_workload import Sources, pools
    from bench.snips_workload import utterances
    from distill.chat_format import stop_token_ids
    from distill.gguf_base import hf_base, is_gguf
    from distill.shared_prefix import shared_length, shared_prefix_forward
    from distill.train import LORA, encode_example, load_base
    from gateway.config import installed_candidates

    torch.set_num_threads(args.threads)
    model_name = args.candidate or installed_candidates()[0].model
    base = str(hf_base(model_name)) if is_gguf(model_name) else model_name
    model, tok = load_base(base, 0, [])
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **LORA))  # type: ignore[arg-type]
    src = Sources(utterances(Path(args.snips), "train_full"), [], [])
    items = pools(src)[args.task][:args.examples if args.padding else args.batch]
    stop = stop_token_ids(tok, model.generation_config)
    rows = [encode_example({**it.request, "answer": it.answer, "tools": it.request.get("tools"),
                            "response_format": it.request.get("response_format")}, tok, stop)
            for it in items]
    if args.padding:
        return padding_report(rows, args.batch)
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), tok.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = (torch.tensor(r["input_ids"]),
                                                   torch.tensor(r["labels"]), 1)
    inputs = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    print(f"{base}: batch {len(rows)} x {width} tokens, shared prefix "
          f"{shared_length(ids, labels, mask)}", flush=True)
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=2e-4)
    model.train()
    plain = distill.shared_prefix.PLAIN_HEADS
    for mode in args.modes:
        for step in range(args.steps):
            began = time.perf_counter()
            if mode.endswith("allhead"):  # the model's own forward: logits everywhere
                distill.shared_prefix.PLAIN_HEADS = frozenset()
            began_cpu = time.process_time()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode.startswith("bf16")):
                out = shared_prefix_forward(model, inputs) if "shared" in mode else None
                loss = out.loss if out is not None else model(**inputs).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            distill.shared_prefix.PLAIN_HEADS = plain
            print(f"{mode} step {step}: {time.perf_counter() - began:.1f} s "
                  f"({time.process_time() - began_cpu:.1f} s CPU), loss {float(loss):.3f}, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    return 0


def padding_report(rows: list[dict[str, list[int]]], batch: int) -> int:
    """Tokens an epoch computes after the shared prompt, random vs length-grouped batches."""
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    lengths = [len(r["input_ids"]) for r in rows]
    first = min(next((i for i, t in enumerate(r["labels"]) if t != -100), 0) for r in rows)
    prefix = min(len(os.path.commonprefix([r["input_ids"] for r in rows])), first - 1)
    real = sum(n - prefix for n in lengths)
    learnt = sum(sum(1 for t in r["labels"] if t != -100) for r in rows)
    orders = {"random": torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))
              .tolist(),
              "length-grouped": get_length_grouped_indices(
                  lengths, batch, generator=torch.Generator().manual_seed(0))}
    print(f"{len(rows)} rows, batch {batch}: shared prompt ~{prefix} tokens, "
          f"{real} tokens after it, {learnt} of them learnt (the head's positions)")
    for name, order in orders.items():
        computed = sum(len(b) * (max(lengths[i] for i in b) - prefix)
                       for b in (order[k:k + batch] for k in range(0, len(order), batch)))
        print(f"{name}: {computed} tokens computed per epoch, "
              f"{1 - real / computed:.0%} of them padding")
    return 0


if __name__ == "__main__":
    sys.exit(main())
