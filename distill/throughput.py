"""How fast each candidate trains here, measured by its earlier runs, for S4's time check.

Every generative run records `training.tokens_per_s` (loading and saving included) in its
student's metrics. A candidate's rate is the median over the runs of the tenant's own tasks:
a number about this machine, read without crossing tenants.
"""

from __future__ import annotations

from statistics import median

from distill.chat_format import conversation, render
from distill.curate import Example
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


def estimated_tokens(train: list[Example]) -> int:
    """The training data in tokens as a student is trained on it: each example rendered in
    the chat format — tools and response schema included, as the measured rate counts
    them — at ~4 characters a token."""
    return sum(len(render(*conversation(ex.as_training()))) for ex in train) // 4
