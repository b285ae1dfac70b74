"""Task labels on public traffic and on the demo's workload, as the report shows them.

Discovers tasks on each workload (SNIPS as tool calls, τ²-bench and AgentDojo from
`bench/agent_data.py` when their wheel is present, the demo workload plain and with generic
prompts) and prints each found task's label beside the true task it holds most of.

    python bench/label_bench.py [--snips PATH] [--per-task 120]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

Req = tuple[str, dict[str, Any], dict[str, Any]]  # (true task, request, teacher answer)


def demo(per_task: int, generic: bool) -> list[Req]:
    from gateway.offline.workload import GENERIC_CAPABLE, KINDS, generate

    items = generate(per_task * len(KINDS), seed=1, generic=GENERIC_CAPABLE if generic else ())
    return [(i.task, i.request, i.answer) for i in items]


def snips(root: Path, per_task: int) -> list[Req]:
    from bench.snips_workload import snake, work_items

    out = []
    for request, answer in work_items(root)[: per_task * 7]:
        out.append((snake(answer["tool_calls"][0]["function"]["name"]), request, answer))
    return out


def public(per_task: int) -> dict[str, list[Req]]:
    from bench.agent_data import DataMissing, load_all
    from bench.discovery_bench import agentdojo_specs, requests, tau2_specs

    try:
        _, tau2, dojo = load_all()
    except DataMissing as e:
        print(f"τ²-bench / AgentDojo skipped: {e}")
        return {}
    out = {}
    for name, specs in (("tau2", [s for d in tau2 for s in tau2_specs(d)]),
                        ("agentdojo", agentdojo_specs(dojo))):
        for generic in (False, True):
            out[name + (" generic" if generic else "")] = requests(specs, per_task, 1, generic)
    return out


def labels(reqs: list[Req]) -> list[tuple[str, str, int]]:
    """(true task it holds most of, label, rows) per discovered task."""
    from bench.discovery_bench import rows_of
    from distill.discover import discover

    found = discover(rows_of(reqs), min_task_examples=20)
    truth = {i + 1: t for i, (t, _, _) in enumerate(reqs)}
    held: dict[str, Counter[str]] = {}
    for task, seq in found.assignments:
        held.setdefault(task or "", Counter())[truth[seq]] += 1
    return sorted((held.get(t.id, Counter({"?": 0})).most_common(1)[0][0], t.label,
                    t.info["count"]) for t in found.tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snips", default="/work/.mirror/snipsco+nlu-benchmark/repo",
                        help="a checkout (or bare git dir) of snipsco/nlu-benchmark")
    parser.add_argument("--per-task", type=int, default=120)
    args = parser.parse_args()
    workloads: dict[str, list[Req]] = {"demo": demo(args.per_task, False),
                                       "demo generic": demo(args.per_task, True)}
    if Path(args.snips).exists():
        workloads["snips"] = snips(Path(args.snips), args.per_task)
    workloads.update(public(args.per_task))
    for name, reqs in workloads.items():
        print(f"\n{name}:")
        for true, label, n in labels(reqs):
            print(f"  {true:28} {n:5}  {label}")


if __name__ == "__main__":
    main()
