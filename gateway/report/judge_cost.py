"""What judging free text cost per task: the `backend = 'judge'` rows of the report's window.

The report's temp table holds every exchange of the window; the judge calls are summed here
and then taken out of it, so they never count as a task's requests, tokens or latency.
"""

from __future__ import annotations

from typing import Any

from gateway.store.db import count_if


def no_judge_calls() -> dict[str, Any]:
    return {"calls": 0, "errors": 0, "tokens": 0, "usd": 0.0, "priced": 0}


def judge_usage(con: Any) -> dict[str, dict[str, Any]]:
    """Judge calls by task (calls, failed calls, tokens, dollars over the priced ones), then
    removed from `report_rows`."""
    out = {}
    for task, calls, errors, tokens, usd, priced in con.execute(
        f"SELECT task, COUNT(*), {count_if('status >= 400')}, SUM(tokens), SUM(cost_usd), "
        "COUNT(cost_usd) FROM report_rows WHERE backend = 'judge' GROUP BY task"
    ):
        out[task] = {"calls": int(calls), "errors": int(errors or 0), "tokens": int(tokens or 0),
                     "usd": float(usd or 0.0), "priced": int(priced)}
    con.execute("DELETE FROM report_rows WHERE backend = 'judge'")
    return out
