"""How long the gateway takes to find a request's worked examples (gateway/exemplars.py).

Banks of public text-to-SQL exchanges (text2sql-data: geography's questions; WikiSQL's, each
with its table's columns) of 500, 2,500 and 5,000; 200 other questions looked up in each.

    PYTHONPATH=. python bench/exemplar_lookup.py --text2sql DIR
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.text2sql_workload import sql_items
from gateway.exemplars import Exemplars


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--text2sql", default="/work/t2s", help="a checkout of text2sql-data")
    args = p.parse_args()
    for task in ("sql_geography", "sql_wikisql"):
        items = sql_items(Path(args.text2sql), task)
        pairs = [(r["messages"][-1]["content"], a["content"]) for r, a in items]
        for n in (500, 2500, 5000):
            probe = pairs[n:n + 200] or pairs[:200]
            began = time.perf_counter()
            bank = Exemplars(pairs[:n], 2)
            build = time.perf_counter() - began
            began = time.perf_counter()
            for question, _ in probe:
                bank.add_to({"messages": [{"role": "user", "content": question}]})
            each = (time.perf_counter() - began) / len(probe) * 1000
            print(f"{task:14s} bank {len(bank):5d}: built in {build * 1000:5.0f} ms, "
                  f"{each:6.2f} ms a request")


if __name__ == "__main__":
    main()
