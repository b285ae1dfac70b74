"""How fast each candidate trains here, measured by its earlier runs, for S4's time check.

Every generative run records `training.tokens_per_s` (loading and saving included) in its
student's metrics. A candidate's rate is the median over the runs of the tenant's own tasks:
a number about this machine, read without crossing tenants.
"""

from __future__ import annotations

from statistics import median
from typing import Any

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


def estimated_tokens(info: dict[str, Any], examples: int) -> int:
    """The task's training data in tokens, from discovery's length statistics (chars / 4):
    each example's median prompt and half its longest answer."""
    prompt = int(info.get("prompt_tokens_p50") or 0)
    answer = int(info.get("answer_tokens_p99") or 0)
    return examples * (prompt + answer // 2)
