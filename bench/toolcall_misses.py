"""The encoder student's misses on a tool-call task, broken down by cause.

Runs the product's path on the public SNIPS workload (`bench/snips_workload.py`): the task
prepared (`distill.candidates.prepare`: copy slots fitted), the encoder trained on the raw
requests under a time budget (`--slots`: on delexicalized ones, answering through the copy
slots, as before 2026-12-06), the held-out split compared with the live comparator. Prints
held-out agreement with n, every miss filed under its cause (`bench/miss_causes.py`) with
counts and 3 examples each, and what the copy-slot proposer did to the held-out values.
`--agent` adds the proposer's view of the τ²-bench and AgentDojo cases
(`bench/agent_data.py`: too few per domain to train on).

    nice -n 10 python bench/toolcall_misses.py --snips DIR --budget-s 90 --threads 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.miss_causes import CAUSES, calls, miss_causes, slot_fate


@dataclass
class MissConfig:
    snips: str = ""  # a checkout of snipsco/nlu-benchmark (work tree or bare git dir)
    agent: bool = False  # also the proposer's view of the τ²-bench/AgentDojo cases
    train: int = 500  # training utterances
    heldout: int = 200  # held-out utterances
    budget_s: float = 90.0  # encoder training budget
    tune_layers: int = 4  # as the product trains it (EncoderConfig.tune_layers)
    threads: int = 1  # torch CPU threads
    seed: int = 0
    examples: int = 3  # shown per cause
    proposer_only: bool = False  # print what the copy slots do, train nothing
    slots: bool = False  # train and ask the encoder through copy slots (before 2026-12-06)


def _user_text(request: dict[str, Any]) -> str:
    return next((str(m.get("content")) for m in reversed(request["messages"])
                 if m.get("role") == "user"), "")


def _args(message: dict[str, Any]) -> str:
    return "; ".join(f"{n}({json.dumps(a, ensure_ascii=False)})" for n, a in calls(message))


def proposer_view(pairs: list[tuple[dict[str, Any], dict[str, Any]]], slots: Any,
                  fields: list[str] | None, show: int) -> tuple[Counter[str], dict[str, list]]:
    """What the proposer did to each copied value of each (request, answer) pair."""
    from gateway.copy_slots import Slots, copied_values, request_texts

    fates: Counter[str] = Counter()
    seen: dict[str, list[str]] = defaultdict(list)
    for request, answer in pairs:
        proposed = list(Slots(slots, request).values)
        texts = request_texts(request)
        for _, value in copied_values(request, answer, fields):
            text = next(t for t in texts if value in t)
            fate = slot_fate(text, value, proposed)
            fates[fate] += 1
            if fate != "whole" and len(seen[fate]) < show:
                seen[fate].append(f"{value!r} in {text[:90]!r} -> proposed {proposed}")
    return fates, seen


def snips_run(cfg: MissConfig, work: Path) -> None:
    import torch

    from bench.encoder_bench import BenchConfig, snips_split
    from distill.candidates import _as_served, prepare
    from distill.curate import Curated
    from distill.encoder_student import EncoderStudent, train_encoder
    from distill.encoder_train import EncoderConfig
    from distill.evaluate import evaluate, request_of
    from gateway.config import Config

    torch.set_num_threads(cfg.threads)
    train, heldout, kind = snips_split(BenchConfig(snips=cfg.snips, train=cfg.train,
                                                   heldout=cfg.heldout))
    prep = prepare(kind, Curated(train=train, heldout=heldout), len(train), encoder=True)
    if prep.slots is not None:
        pairs = [(ex.request(), ex.answer) for ex in heldout]
        fates, seen = proposer_view(pairs, prep.slots, prep.slots.coverage.get("fields"),
                                    cfg.examples)
        print(f"copy slots on held-out copied values: {dict(fates)}")
        for fate, lines in seen.items():
            print(f"  {fate}:", *lines, sep="\n    ")
    if cfg.proposer_only:
        return
    if not cfg.slots:  # as distill.candidates.fit_encoder: the request's own words
        prep.train, prep.slots = prep.raw_train, None
    info = train_encoder(prep.train, work / "snips", budget_s=cfg.budget_s, seed=cfg.seed,
                         cfg=EncoderConfig(tune_layers=cfg.tune_layers))
    student = _as_served(EncoderStudent.load(work / "snips"), prep)
    ev = evaluate(student, heldout, kind, confidence=Config().policy.confidence,
                  text_threshold=0.85, batch_size=16)
    s, t = ev.summary, info["training"]
    print(f"SNIPS held-out agreement {s['agree']}/{s['n']} = {s['agreement']:.3f} "
          f"[{s['lower']:.3f}, {s['upper']:.3f}] (train {len(train)}, "
          f"{t['head_epochs']}+{t['tuned_epochs']} epochs, {t['seconds']:.0f} s)")
    requests = {ex.request_id: request_of(ex, 256) for ex in heldout}
    by_cause: dict[str, list[str]] = defaultdict(list)
    for row in ev.rows:
        if row["agree"]:
            continue
        causes = miss_causes(row["student"], row["teacher"]) or ["other value"]
        by_cause[causes[0]].append(
            f"{_user_text(requests[row['request_id']])!r}\n      teacher {_args(row['teacher'])}"
            f"\n      student {_args(row['student'])}")
    print(f"misses by cause ({s['n'] - s['agree']}):")
    for cause in CAUSES:
        if by_cause[cause]:
            print(f"  {cause}: {len(by_cause[cause])}")
            for line in by_cause[cause][:cfg.examples]:
                print(f"    {line}")


def agent_view(cfg: MissConfig) -> None:
    """The patterns alone (a new request's values are in no gazetteer) on the first
    ground-truth call of every τ²-bench/AgentDojo case whose arguments the user wrote."""
    from bench.agent_data import load_all
    from gateway.copy_slots import CopySlots

    _, tau2, dojo = load_all()
    pairs = []
    for domain in tau2 + dojo:
        for case in domain.cases:
            if not case.calls:
                continue
            name, args = case.calls[0]
            call = {"type": "function", "function": {"name": name,
                                                     "arguments": json.dumps(args)}}
            pairs.append(({"messages": [{"role": "user", "content": case.text}]},
                          {"role": "assistant", "content": None, "tool_calls": [call]}))
    fates, seen = proposer_view(pairs, CopySlots(), None, cfg.examples)
    print(f"τ²-bench + AgentDojo ({len(pairs)} cases), copied values: {dict(fates)}")
    for fate, lines in seen.items():
        print(f"  {fate}:", *lines, sep="\n    ")


def main(cfg: MissConfig) -> None:
    if cfg.agent:
        agent_view(cfg)
    if cfg.snips:
        with tempfile.TemporaryDirectory() as tmp:
            snips_run(cfg, Path(tmp))


def parse_args(argv: list[str] | None = None) -> MissConfig:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = MissConfig()
    p.add_argument("--snips", default=d.snips, help="snipsco/nlu-benchmark checkout")
    p.add_argument("--agent", action="store_true", help="τ²-bench/AgentDojo proposer view")
    p.add_argument("--proposer-only", action="store_true", help="train nothing")
    p.add_argument("--slots", action="store_true", help="the encoder through copy slots")
    p.add_argument("--train", type=int, default=d.train)
    p.add_argument("--heldout", type=int, default=d.heldout)
    p.add_argument("--budget-s", type=float, default=d.budget_s)
    p.add_argument("--tune-layers", type=int, default=d.tune_layers)
    p.add_argument("--threads", type=int, default=d.threads)
    a = p.parse_args(argv)
    return MissConfig(snips=a.snips, agent=a.agent, train=a.train, heldout=a.heldout,
                      budget_s=a.budget_s, tune_layers=a.tune_layers, threads=a.threads,
                      proposer_only=a.proposer_only, slots=a.slots)


if __name__ == "__main__":
    main(parse_args())
