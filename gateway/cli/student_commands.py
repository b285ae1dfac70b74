"""`slimgate students export`: a registered student written out as a self-contained directory.

The writing is `distill.export`'s (imported here, when the verb runs); this module turns its
outcome into a line for people, or its refusal into an error on stderr (exit status 1).
"""

from __future__ import annotations

import argparse
import sys

from rich.markup import escape

from gateway.cli.process_commands import load
from gateway.report.terminal import wide_console


def export(args: argparse.Namespace) -> int:
    from distill.export import ExportError, export_student

    config = load(args)
    if args.version is not None and args.version < 1:
        print(f"slimgate: --version must be 1 or more, not {args.version}", file=sys.stderr)
        return 2
    try:
        done = export_student(config, args.task, args.out, version=args.version,
                              merge=args.merge, force=args.force)
    except ExportError as e:
        print(f"slimgate: {e}", file=sys.stderr)
        return 1
    console = wide_console()
    if done.forced_past:
        console.print(f"[yellow]exported despite the gate (--force):[/] {escape(done.forced_past)}")
    for note in done.notes:
        console.print(escape(note))
    console.print(f"exported {escape(done.task.id)} v{done.student.version} "
                  f"({escape(done.task.label)}; {done.kind}, {done.weights}) to "
                  f"{escape(str(done.out))}; model card: README.md")
    return 0
