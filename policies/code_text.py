"""Free text that is code (a SQL statement, a fenced block): compared token for token.

Sentence embeddings read code as prose: `SELECT notes FROM t WHERE state = 'Ohio'` and the
same query over `city` sit above the 0.85 cosine bar, yet return different rows. Measured on
public text-to-SQL (text2sql-data's restaurants, `bench/pretrained_run.py --tasks
sql_restaurants`, 2026-12-07): the embedding comparator agreed on 0.95 of held-out answers
where 0.05 were the teacher's query. So code agrees only when its tokens are the teacher's
(whitespace, a trailing `;`, a fence and the case of unquoted words aside); the score is
their sequence similarity, for near-miss reports only.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

# A SQL statement's opening words, each with a clause that must follow; the first keyword
# written as SQL is (all capitals or all lower case, not "Select ... from" as a sentence
# starts) and no full stop, question or exclamation mark at the end, so that prose such as
# "Select a plan from the list below." is not taken for code.
_SQL = re.compile(
    r"^(?:SELECT\b[\s\S]*\bFROM\b|WITH\s+\w+(?:\s*\([^)]*\))?\s+AS\s*\(|INSERT\s+INTO\b"
    r"|UPDATE\s+\S+\s+SET\b|DELETE\s+FROM\b|(?:CREATE|ALTER|DROP)\s+(?:TABLE|INDEX|VIEW)\b)",
    re.IGNORECASE)
_FENCE = re.compile(r"^```[\w+-]*\n([\s\S]*?)\n?```$")
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|\w+|[^\w\s]")


def _unfenced(text: str) -> tuple[str, bool]:
    m = _FENCE.match(text.strip())
    return (m.group(1), True) if m else (text.strip(), False)


def is_code(text: str | None) -> bool:
    """Whether an answer is code: wholly one fenced block, or a SQL statement."""
    if not text:
        return False
    body, fenced = _unfenced(text)
    if fenced:
        return True
    first = body.split(None, 1)[0] if body else ""
    return (_SQL.match(body) is not None and (first.isupper() or first.islower())
            and not body.endswith((".", "!", "?")))


def code_tokens(text: str) -> list[str]:
    """Tokens as the comparison sees them: quoted strings kept whole and as written, other
    words case-folded (SQL keywords and unquoted names are case-insensitive), a final `;`
    dropped."""
    body, _ = _unfenced(text)
    tokens = [t if t[0] in "'\"`" else t.casefold() for t in _TOKEN.findall(body)]
    while tokens and tokens[-1] == ";":
        tokens.pop()
    return tokens


_NUMBER = re.compile(r"\d+")


def code_shape(text: str) -> list[str]:
    """The code's tokens with its literals — quoted strings, numbers (`2.5` is three tokens
    to `code_tokens`) — as one marker each: two queries of one shape that differ in their
    values have the same shape."""
    shape: list[str] = []
    for t in code_tokens(text):
        number = bool(_NUMBER.fullmatch(t))
        if number and shape[-2:] == ["<literal>", "."]:
            shape.pop()  # the fraction of a decimal number: one literal with its integer part
        elif t[0] in "'\"" or number:
            shape.append("<literal>")
        else:
            shape.append(t)
    return shape


def compare_code(student: str, teacher: str) -> tuple[bool, float, str]:
    """(same code, token sequence similarity 0..1, a short reason)."""
    got, want = code_tokens(student), code_tokens(teacher)
    if got == want:
        return True, 1.0, "same code"
    score = SequenceMatcher(None, got, want, autojunk=False).ratio()
    at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
              min(len(got), len(want)))
    said = got[at] if at < len(got) else "(end)"
    wanted = want[at] if at < len(want) else "(end)"
    return False, score, f"code differs at token {at + 1}: {said[:40]!r} vs {wanted[:40]!r}"
