"""Every `slimgate …` command line shown in the README and docs/ parses with the real parser.

Docs drift: a flag renamed in the code keeps living in a how-to. Command lines are taken from
inline code (`slimgate …`) and from code blocks; the usage notation they use — `[optional]`,
`a|b` alternatives, `...` and upper-case placeholders — is expanded into concrete lines.
"""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import pytest

from gateway.cli.parser import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
INLINE = "\0"  # marks a line found in inline code
PLACEHOLDER = {"ID": "t-1", "TASK": "t-1", "FILE": "f.toml", "N": "3", "...": "why"}


def _lines(text: str) -> list[str]:
    # Inline code names a verb in running text ("`slimgate traces import` records them"):
    # its required arguments may be left out; code blocks show whole command lines.
    found = [INLINE + m for m in re.findall(r"`(slimgate [^`]+)`", text)]
    in_block = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            for part in line.split("#", 1)[0].split(";"):
                part = part.strip().removeprefix("$ ")
                if part.startswith("slimgate "):
                    found.append(part)
    return found


def expand(line: str) -> list[list[str]]:
    """Concrete argv lists for one documented line (optional parts included)."""
    line = re.sub(r"\[([^\]]*)\]", r"\1", line)
    words = shlex.split(line)[1:]
    choices = [w.split("|") if "|" in w else [PLACEHOLDER.get(w, w)] for w in words]
    return [list(c) for c in itertools.product(*choices)]


def documented() -> list[tuple[str, list[str]]]:
    out = []
    for doc in DOCS:
        for line in _lines(doc.read_text(encoding="utf-8")):
            inline = line.startswith(INLINE)
            line = line.removeprefix(INLINE)
            out += [(f"{doc.name}: {line}" + (" (inline)" if inline else ""), argv)
                    for argv in expand(line)]
    return out


@pytest.mark.parametrize("where,argv", documented(), ids=lambda v: v if isinstance(v, str) else "")
def test_documented_command_parses(where: str, argv: list[str],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as e:
        missing_only = "the following arguments are required" in capsys.readouterr().err
        if not (where.endswith("(inline)") and missing_only):
            pytest.fail(f"{where} does not parse (exit {e.code})")


def test_inline_mentions_may_leave_out_required_arguments_only() -> None:
    found = _lines("run `slimgate traces import` or `slimgate traces import --bogus x`")
    assert [line.startswith(INLINE) for line in found] == [True, True]
    with pytest.raises(SystemExit):  # a wrong flag still fails, inline or not
        build_parser().parse_args(expand(found[1].removeprefix(INLINE))[0])


def test_the_check_catches_a_stale_flag() -> None:
    [argv] = expand("slimgate report --format html --output FILE")
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)


def test_docs_show_commands() -> None:
    verbs = {argv[0] for _, argv in documented()}
    assert {"serve", "worker", "distill", "tasks", "report", "demo"} <= verbs
