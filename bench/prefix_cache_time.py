"""Seconds per answer of a generative student asked one request at a time, with the prompt
text its requests share run once and reused (`distill.student.PromptPrefix`) or every
request's whole prompt run anew; and, with the prefix kept, decoded under the request's
grammar or free (what constrained decoding costs a token). Same greedy tokens with the prefix
kept or re-run (checked here).

    nice -n 19 python bench/prefix_cache_time.py --task snips_json --requests 6 --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--student", default=None, help="a student or base model directory "
                   "(default: the installed SmolLM2-135M-Instruct, converted)")
    p.add_argument("--task", default="snips_json", help="snips_json | snips_tools | snips_label")
    p.add_argument("--snips", default="/work/.mirror/snipsco+nlu-benchmark/repo")
    p.add_argument("--requests", type=int, default=6)
    p.add_argument("--max-tokens", type=int, default=24, help="tokens generated per answer")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    from bench.loop_workload import Sources, pools
    from bench.snips_workload import utterances
    from distill.chat_format import prompt_text
    from distill.gguf_base import hf_base
    from distill.student import Student
    from gateway.config import installed_candidates

    torch.set_num_threads(args.threads)
    path = args.student or str(hf_base(installed_candidates()[0].model))
    student = Student.load(path)
    src = Sources(utterances(Path(args.snips), "train_full"), [], [])
    requests = [{**it.request, "max_tokens": args.max_tokens}
                for it in pools(src)[args.task][:args.requests]]
    tok = student.tokenizer
    widths = [len(tok(prompt_text(tok, r), add_special_tokens=False)["input_ids"])
              for r in requests]
    print(f"{path}: {len(requests)} {args.task} requests, prompts {min(widths)}-{max(widths)} "
          f"tokens, {args.max_tokens} generated each, {args.threads} thread(s)")
    texts = {}
    for reuse, constrained in ((False, True), (True, True), (True, False)) * 2:
        student.reuse_prefix, student.constrained = reuse, constrained
        student.prefix.__init__()
        wall, cpu, out = [], [], []
        for r in requests:
            began, began_cpu = time.perf_counter(), time.process_time()
            out.append(student.generate([r])[0].text)
            wall.append(time.perf_counter() - began)
            cpu.append(time.process_time() - began_cpu)
        if constrained:
            texts.setdefault(reuse, out)
        later = slice(2, None)  # the first two requests set the prefix up
        print(f"prefix {'kept  ' if reuse else 're-run'}, "
              f"{'constrained' if constrained else 'free       '}: "
              f"{1000 * sum(wall[later]) / len(wall[later]):.0f} ms "
              f"({1000 * sum(cpu[later]) / len(cpu[later]):.0f} ms CPU) per answer after the "
              f"first two; shared {len(student.prefix.ids)} tokens; "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
    print("same answers:", texts[False] == texts[True])
    return 0


if __name__ == "__main__":
    sys.exit(main())
