"""How fast each candidate trains here, for S4's time check: measured by its earlier runs,
or — before any, on a CPU — estimated from its size and this machine's matmul speed.

Every generative run records `training.tokens_per_s` (loading and saving included) in its
student's metrics. A candidate's rate is the median over the runs of the tenant's own tasks:
a number about this machine, read without crossing tenants.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from statistics import median

from distill.chat_format import conversation, render
from distill.curate import Example
from distill.train import trains_lora
from gateway.config import CandidateConfig
from gateway.store.catalog import list_students, list_tasks
from gateway.store.db import Connection
from gateway.task_ids import task_tenant


def measured_rates(con: Connection, tenant: str | None) -> dict[str, float]:
    """Median training tokens/s per candidate model over the tenant's tasks' students."""
    seen: dict[str, list[float]] = {}
    for task in list_tasks(con):
        if task_tenant(task.info) != tenant:
            continue
        for student in list_students(con, task.id):
            rate = (student.metrics.get("training") or {}).get("tokens_per_s")
            if isinstance(rate, int | float) and rate > 0:
                seen.setdefault(student.base_model, []).append(float(rate))
    return {model: median(rates) for model, rates in seen.items()}


def rendered(train: list[Example]) -> list[str]:
    """Each example as a student is trained on it: rendered in the chat format, tools and
    response schema included, as the measured rate counts them."""
    return [render(*conversation(ex.as_training())) for ex in train]


def estimated_tokens(texts: list[str]) -> int:
    """Rendered training examples in tokens, at ~4 characters a token."""
    return sum(map(len, texts)) // 4


# What a training token costs, in FLOPs per parameter: a forward pass 2, its backward pass 2
# more for the activations' gradients; full fine-tuning 2 more for the weights' gradients (a
# LoRA run computes none for its frozen weights). In a LoRA run the shared prompt runs
# forward only, once every `prefix_reuse_steps` steps (distill.shared_prefix).
FORWARD_FLOPS = 2
LORA_FLOPS = 4
FULL_FLOPS = 6
# The share of that matmul bound a run reaches at most: measured runs of SmolLM2-135M (LoRA,
# four rows a step, one thread of a 2-core AMD EPYC, bound at its ~90 GFLOPS in CPU time)
# made 0.26-0.62 of the steps it gives — WikiSQL 195 of 420 (277 of 447 with the prompt
# reused 8 steps), SNIPS intents 307 of 722, restaurants SQL 53-78 of 199, SNIPS as JSON
# 73-118 of 279 (217 of 550 reused), SNIPS tool calls 109 of 353 (reused; docs/students.md):
# small matmuls, attention, norms, the optimizer and loading are not the bound's. 0.7 keeps
# the estimate above every measured run, so it rules out only what is clearly too slow.
BOUND_SHARE = 0.7


@dataclass(frozen=True)
class BudgetSteps:
    steps: float  # training steps the time budget holds
    basis: str  # how the candidate's speed is known


@cache
def cpu_gflops(threads: int) -> float:
    """float32 matmul GFLOPS of this machine on `threads` torch threads, measured once on the
    shapes a small model's layers multiply (a few hundred rows by 576 by 1,536). Counted in
    CPU time, not wall time: what the machine can compute, whatever else runs at the moment
    it is measured (under two other busy processes, wall time read 5 GFLOPS where CPU time
    reads ~90 on this 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(512, 576), torch.randn(576, 1536)
        a @ b  # first call: allocation and dispatch
        runs, started = 0, time.process_time()
        while runs < 3 or time.process_time() - started < 0.2:
            a @ b
            runs += 1
        cpu_seconds = time.process_time() - started  # summed over the threads that ran
    finally:
        torch.set_num_threads(before)
    return 2 * 512 * 576 * 1536 * runs / max(cpu_seconds, 1e-9) * threads / 1e9


def shared_tokens(texts: list[str]) -> int:
    """Tokens every rendered example starts with (their common prefix, at ~4 characters a
    token): the part a LoRA step runs without gradients."""
    return len(os.path.commonprefix(texts)) // 4 if len(texts) > 1 else 0


def budget_steps(candidates: list[CandidateConfig], train: list[Example], *, budget_s: float,
                 rows: Mapping[str, int], rates: Mapping[str, float],
                 gflops: float | None, prefix_reuse: int = 1) -> dict[str, BudgetSteps]:
    """Steps each candidate's run makes in `budget_s` on the task's examples: from its
    training speed measured here (`rates`, tokens/s), else — on a CPU (`gflops` measured) —
    estimated from its size, a LoRA run's shared prompt run once every `prefix_reuse` steps.
    Candidates neither measured nor estimable are left out."""
    if not train or budget_s <= 0:
        return {}
    texts = rendered(train)  # rendered once: a task may hold thousands of examples
    mean = estimated_tokens(texts) / len(texts)
    shared = min(shared_tokens(texts), int(mean))
    out = {}
    for c in candidates:
        batch = max(1, rows.get(c.model, 16))
        rate = rates.get(c.model)
        if rate:
            out[c.model] = BudgetSteps(budget_s * rate / (mean * batch),
                                       f"measured {rate:,.0f} training tokens/s here")
        elif gflops:
            if trains_lora(c.model, c.method):
                flops = c.params * (FORWARD_FLOPS * shared / max(1, prefix_reuse)
                                    + LORA_FLOPS * batch * (mean - shared))
            else:  # a full fine-tune runs every row whole (its prefix is being learnt too)
                flops = c.params * FULL_FLOPS * batch * mean
            out[c.model] = BudgetSteps(
                BOUND_SHARE * budget_s * gflops * 1e9 / flops,
                f"estimated from its {c.params / 1e6:,.0f}M parameters at this CPU's measured "
                f"{gflops:.0f} GFLOPS (not yet run here)")
    return out
