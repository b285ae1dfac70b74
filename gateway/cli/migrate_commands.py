"""The `slimgate` verbs that bring a team's history and setup in: `traces import` (logged
exchanges recorded as teacher traffic) and `config from-litellm` (a LiteLLM proxy's
`model_list` as `[[models]]`). docs/migrating.md is their guide.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli.process_commands import load

if TYPE_CHECKING:  # the verbs import their modules when run, so `--help` stays light
    from gateway.offline.trace_import import ImportReport


class _Progress:
    """One line on stderr, rewritten at most 5 times a second: file, share read, counts."""

    def __init__(self) -> None:
        self._last = 0.0
        self._label = ""

    def __call__(self, report: ImportReport, label: str, done: int, total: int) -> None:
        now = time.monotonic()
        if label != self._label:
            self.end()
            self._label = label
        elif now - self._last < 0.2 and done < total:
            return
        self._last = now
        share = f"{100 * done / total:5.1f}%" if total else "  -  "
        sys.stderr.write(f"\r{label}: {share} {done / 1e6:,.1f}/{total / 1e6:,.1f} MB  "
                         f"exchanges {report.examples:,}  written {report.written:,}  "
                         f"duplicates {report.duplicates:,}  bad {report.bad:,}  ")
        sys.stderr.flush()

    def end(self) -> None:
        if self._label:
            sys.stderr.write("\n")
            self._label = ""


def traces_import(args: argparse.Namespace) -> int:
    from gateway.offline.trace_import import FORMATS, TraceImportError, import_traces
    from gateway.report.terminal import wide_console

    config = load(args)
    show = _Progress() if args.progress or sys.stderr.isatty() else None
    started = time.perf_counter()
    try:
        report = import_traces(config, args.files, tenant=args.tenant, model=args.model,
                               progress=show)
    except TraceImportError as e:
        print(f"slimgate: {e}", file=sys.stderr)
        return 2
    finally:
        if show is not None:
            show.end()
    seconds = time.perf_counter() - started
    console = wide_console()
    for path, fmt in report.formats.items():
        console.print(f"{path}: {FORMATS[fmt]}", markup=False, highlight=False)
    console.print(f"imported {report.written:,} of {report.examples:,} exchanges in "
                  f"{seconds:.1f} s" + (f" for tenant {report.tenant}" if report.tenant else "")
                  + f"; {report.duplicates:,} already in the store", markup=False)
    for reason, n in report.skipped.most_common():
        console.print(f"skipped {n:,}: {reason}", markup=False, highlight=False)
    if report.bad:
        console.print(f"{report.bad:,} bad line(s), not written:", markup=False)
        for line in report.bad_lines:
            console.print(f"  {line}", markup=False, highlight=False)
        if report.bad > len(report.bad_lines):
            console.print(f"  … and {report.bad - len(report.bad_lines):,} more", markup=False)
        return 1
    return 0


def config_from_litellm(args: argparse.Namespace) -> int:
    import yaml

    from gateway.config import ConfigError, parse_config
    from gateway.litellm_config import LiteLLMConfigError, from_litellm, render_toml

    path = Path(args.file)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        models, notes = from_litellm(data)
        text = render_toml(models, notes, path.name)
        import tomllib

        parse_config(tomllib.loads(text), f"(converted from {path})")  # it must load
    except OSError as e:
        print(f"slimgate: cannot read '{path}': {e.strerror}", file=sys.stderr)
        return 2
    except yaml.YAMLError as e:
        print(f"slimgate: '{path}' is not valid YAML: {e}", file=sys.stderr)
        return 2
    except (LiteLLMConfigError, ConfigError) as e:
        print(f"slimgate: {path}: {e}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {len(models)} model(s) to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
