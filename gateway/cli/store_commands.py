"""The `slimgate` verbs that read or change the store: distill, tasks, overrides, prune,
maintain, report, traces.

Each reads the same config as the gateway and works on its store directly (plain sqlite3,
WAL: safe beside a running gateway). Output is rich tables for people; `--json` where a
machine reads it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson
from rich.markup import escape
from rich.table import Table

from gateway.cli.process_commands import load
from gateway.config import Config
from gateway.registry import Registry
from gateway.report.terminal import wide_console
from gateway.store.catalog import TaskRecord, best_student, list_students, list_tasks
from gateway.store.db import connect
from gateway.store.leader import leader_lock
from gateway.store.memory import TrackRecord, memory_tracks
from gateway.store.stages import count_task_examples
from policies.router import canary_share
from policies.student_kinds import DEFAULT_KIND


def copy_coverage_text(metrics: dict[str, Any]) -> str:
    """A student's copy-slot coverage as shown to people: the share, or why there is none."""
    if "copy_coverage" not in metrics:
        return "—"
    share = metrics["copy_coverage"]
    return "no copied values" if share is None else f"{share:.2f}"


def tasks(args: argparse.Namespace) -> int:
    if getattr(args, "action", None) == "rename":
        return rename(args)
    config, console = load(args), wide_console()
    con = connect(config.store)
    try:
        lock = leader_lock(config.store)
        leader = lock.holder()
        lock.release()  # held nothing; closes its connection on PostgreSQL
        console.print(f"leading worker: {leader}" if leader else "leading worker: none running")
        tasks = list_tasks(con)
        if not tasks:
            console.print("no tasks yet: send traffic through the gateway, then run "
                          "`slimgate distill` (or let the worker do it)")
            return 0
        memories = memory_tracks(con)
        table = Table(title="tasks")
        for col in ("id", "label", "kind", "stage", "pin", "examples", "held-out",
                    "best student", "student kind", "copy coverage", "held-out agreement",
                    "answer memory"):
            table.add_column(col)
        for t in tasks:
            best = best_student(con, t.id)
            students = list_students(con, t.id)
            latest = students[-1] if students else None
            shown = best or latest
            m = shown.metrics if shown else {}
            agreement = (f"{m['agreement']:.2f} [{m.get('lower', 0):.2f}, "
                         f"{m.get('upper', 0):.2f}]" if "agreement" in m
                         else str(m.get("error", "—"))[:60])
            share = canary_share(config.policy.for_task(t.id, t.label, t.pin), t.stage, t.step)
            stage = t.stage + (f" {share:g}%" if t.stage == "canary" else "")
            table.add_row(*(escape(cell) for cell in (  # labels come from client traffic
                t.id, t.label, t.kind, stage, t.pin or "", str(count_task_examples(con, t.id)),
                str(m.get("heldout_examples", "—")),
                f"v{shown.version} {shown.base_model} ({shown.status})" if shown else "—",
                str(m.get("student_kind", DEFAULT_KIND if shown else "—")),
                copy_coverage_text(m), agreement, memory_text(memories.get(t.id), config, t),
            )))
        console.print(table)
        return 0
    finally:
        con.close()


def memory_text(track: TrackRecord | None, config: Config, t: TaskRecord) -> str:
    """A task's answer memory in a cell: its stage (and share) and how many answers it holds."""
    if track is None:
        return "—"
    share = canary_share(config.policy.for_task(t.id, t.label, t.pin), track.stage, track.step)
    stage = track.stage + (f" {share:g}%" if track.stage == "canary" else "")
    return f"{stage}, {track.entries} answers"


def rename(args: argparse.Namespace) -> int:
    """`slimgate tasks rename TASK NAME`: the operator's name, kept across re-discovery."""
    from gateway.admin import overrides

    if not args.task or args.name is None:
        print('usage: slimgate tasks rename TASK "NAME"', file=sys.stderr)
        return 2
    config, console = load(args), wide_console()
    con = connect(config.store)
    try:
        task = overrides.rename(con, args.task, args.name)
    except overrides.OperatorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        con.close()
    console.print(f"{escape(task.id)}: now named {escape(task.label)!r}")
    return 0


def distill(args: argparse.Namespace) -> int:
    from distill.passes import run_distill

    config, console = load(args), wide_console()
    outcomes = run_distill(config, task_id=args.task, progress=True, report=console.print)
    table = Table(title="distill summary")
    for col in ("task", "label", "action", "version", "result", "seconds"):
        table.add_column(col)
    for o in outcomes:
        verdict = f"{o.status}: " if o.status else ""
        result = verdict + o.reason
        table.add_row(*(escape(cell) for cell in (
            o.task, o.label, o.action, f"v{o.version}" if o.version else "", result,
            f"{o.seconds:.0f}")))
    console.print(table)
    return 0


def override(args: argparse.Namespace) -> int:
    """promote, rollback, pin and unpin: audited stage changes."""
    from gateway.admin import overrides

    config, console = load(args), wide_console()
    con = connect(config.store)
    try:
        if args.command == "promote":
            change = overrides.promote(con, args.task, list(config.policy.canary_steps),
                                      args.reason)
            console.print(f"{escape(args.task)}: {change.from_stage} → {change.to_stage}"
                          + (f" step {change.to_step}" if change.to_stage == "canary" else ""))
        elif args.command == "rollback":
            change = overrides.rollback(con, args.task, args.reason)
            console.print(f"{args.task}: {change.from_stage} → observe")
        elif args.command == "pin":
            overrides.pin(con, args.task, args.to)
            console.print(f"{args.task}: pinned to the {args.to}")
        else:
            overrides.unpin(con, args.task)
            console.print(f"{args.task}: unpinned")
        return 0
    except overrides.OperatorError as e:
        print(f"slimgate: {e}", file=sys.stderr)
        return 1
    finally:
        con.close()


def report(args: argparse.Namespace) -> int:
    config, console = load(args), wide_console()
    from gateway.report import build_report, parse_since, policy_numbers, render_html
    from gateway.report.terminal import print_report

    built = build_report(config.store, since=parse_since(args.since), worst=args.worst,
                          imported=args.imported, **policy_numbers(config))
    if args.html:
        with open(args.html, "w", encoding="utf-8") as f:
            f.write(render_html(built))
    if args.json:
        sys.stdout.write(orjson.dumps(built, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print_report(built, console)
        if args.html:
            console.print(f"HTML report written to {args.html}")
    return 0


def prune(args: argparse.Namespace) -> int:
    """Old versions go; the one a task serves or shadows and the newest that passed (or nearly
    passed: the gate's next candidate) stay."""
    from gateway.store.stages import set_student_status

    config, console, keep = load(args), wide_console(), args.keep
    registry = Registry(config.distill.students_dir)
    con = connect(config.store)
    try:
        removed = 0
        for t in list_tasks(con):
            best = best_student(con, t.id)
            protect = {v for v in (t.student_version, best.version if best else None) if v}
            for version in registry.prune(t.id, max(1, keep), protect):
                set_student_status(con, t.id, version, "pruned")
                removed += 1
        console.print(f"pruned {removed} student version(s); kept the newest {max(1, keep)} "
                      "per task and every version in use")
        return 0
    finally:
        con.close()


def maintain(args: argparse.Namespace) -> int:
    from gateway.store.retention import maintain as run

    config = load(args)
    con = connect(config.store)
    try:
        done = run(con, config.store.retention_days)
    finally:
        con.close()
    console = wide_console()
    if config.store.retention_days <= 0:
        console.print("store.retention_days is 0: everything is kept")
    console.print(f"partitions made: {', '.join(done['partitions_made']) or 'none'}; "
                  f"dropped: {', '.join(done['partitions_dropped']) or 'none'}; "
                  f"rows deleted: {done['deleted'] or 'none'}")
    return 0


def traces(args: argparse.Namespace) -> int:
    from gateway.offline.traces import export_traces

    config = load(args)
    n = export_traces(config.store, args.out, task=args.task, model=args.model,
                      scrub=config.store.scrub)
    wide_console().print(f"wrote {n} traces to {args.out}")
    return 0
