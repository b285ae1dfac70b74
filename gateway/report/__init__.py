"""Shadow-eval reports: one data structure (`build_report`) rendered as terminal tables, a
self-contained HTML page or JSON (`slimgate report`, `/dashboard`, `/admin/report`).

See docs/reports.md for how to read the numbers and the JSON field reference.
"""

from __future__ import annotations

import re
import time
from typing import Any

from gateway.report.data import REPORT_SCHEMA, build_report, dumps
from gateway.report.html import render_html
from gateway.report.terminal import print_report

__all__ = ["REPORT_SCHEMA", "build_report", "dumps", "print_report", "render_html",
           "policy_numbers", "parse_since"]

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str | None, now: float | None = None) -> float | None:
    """`--since` / `?since=`: unix seconds, or a span back from now such as 90m, 24h, 7d."""
    if text is None or not text.strip():
        return None
    span = _SPAN.match(text.lower())
    if span:
        now = time.time() if now is None else now
        return now - float(span.group(1)) * _UNIT[span.group(2)]
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"since must be unix seconds or a span like 90m, 24h, 7d; got {text!r}"
        ) from None


def policy_numbers(config: Any) -> dict[str, Any]:
    """Gate numbers for `build_report` from a config's `[policy]` table, if it has one."""
    policy = getattr(config, "policy", None)
    if policy is None:
        return {}
    return {"min_agreement": policy.min_agreement, "confidence": policy.confidence,
            "canary_steps": list(policy.canary_steps), "policy": policy}
