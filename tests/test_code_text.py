"""Code answers (SQL, fenced blocks) agree by their tokens, not by embedding cosine."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from distill.curate import Example
from distill.evaluate import evaluate
from policies.code_text import code_tokens, compare_code, is_code
from policies.compare import compare


def _msg(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


@pytest.mark.parametrize("text", [
    "SELECT notes FROM t WHERE state = 'Ohio'",
    "select count(*)\nfrom orders where total > 5;",
    "WITH recent AS (SELECT * FROM orders) SELECT id FROM recent",
    "INSERT INTO t (a) VALUES (1)",
    "UPDATE users SET name = 'x' WHERE id = 2",
    "DELETE FROM t WHERE id = 3",
    "CREATE TABLE t (id int)",
    "```python\nprint('hi')\n```",
    "```\nls -la\n```",
])
def test_code_is_recognised(text: str) -> None:
    assert is_code(text)


@pytest.mark.parametrize("text", [
    "Select the plan you prefer and we will set it up.",
    "We refunded you; the money arrives from the bank in 3 days.",
    "Update: your order shipped.",
    "Select a plan from the list below.",
    "Delete from your cart what you no longer need",
    "Here is the query:\n```sql\nSELECT 1 FROM t\n```",  # prose around the block: prose
    "",
    None,
])
def test_prose_is_not_code(text: str | None) -> None:
    assert not is_code(text)


def test_tokens_ignore_layout_case_and_final_semicolon_but_not_quoted_values() -> None:
    assert code_tokens("SELECT  a\nFROM t ;") == code_tokens("select a from T")
    assert code_tokens("```sql\nSELECT a FROM t\n```") == code_tokens("SELECT a FROM t")
    assert code_tokens("SELECT a FROM t WHERE b = 'Ohio'") != \
        code_tokens("SELECT a FROM t WHERE b = 'ohio'")


def test_compare_code_names_the_first_difference() -> None:
    same, score, detail = compare_code("SELECT notes FROM t WHERE city = 'Ohio'",
                                       "SELECT notes FROM t WHERE state = 'Ohio'")
    assert not same and 0.5 < score < 1.0
    assert "token 6" in detail and "'city'" in detail and "'state'" in detail


def test_sql_with_another_column_disagrees_whatever_the_embedding_says() -> None:
    student = _msg("SELECT notes FROM t WHERE city = 'South Australia'")
    teacher = _msg("SELECT notes FROM t WHERE current_slogan = 'South Australia'")
    c = compare("text", student, teacher, similarity=0.97)
    assert not c.agree and c.valid and c.score < 1.0


def test_sql_written_differently_but_the_same_tokens_agrees_without_similarity() -> None:
    c = compare("text", _msg("select notes\nfrom t where x = 1;"),
                _msg("SELECT notes FROM t WHERE x = 1"))
    assert c.agree and c.score == 1.0


def test_prose_is_still_compared_by_similarity() -> None:
    student, teacher = _msg("We sent you a replacement."), _msg("We refunded your order.")
    assert compare("text", student, teacher, similarity=0.9).agree
    with pytest.raises(ValueError, match="similarity"):
        compare("text", student, teacher)


class _SqlStudent:
    """Answers every request with one fixed query."""

    def __init__(self, sql: str) -> None:
        self.sql = sql

    def generate(self, requests: list[dict[str, Any]], max_new_tokens: int) -> list[Any]:
        return [SimpleNamespace(message=_msg(self.sql), completion_tokens=9) for _ in requests]


def test_heldout_gate_judges_sql_by_tokens_and_asks_no_embedding() -> None:
    heldout = [Example(request_id=f"h{i}", seq=i, key=f"{i:08x}", tools=None,
                       response_format=None,
                       messages=[{"role": "user", "content": f"question {i}"}],
                       answer=_msg("SELECT notes FROM t WHERE state = 'Ohio'"))
               for i in range(6)]
    asked: list[tuple[str, str]] = []

    def cosine(pairs: list[tuple[str, str]]) -> list[float]:
        asked.extend(pairs)
        return [0.97] * len(pairs)

    wrong = evaluate(_SqlStudent("SELECT notes FROM t WHERE city = 'Ohio'"), heldout, "text",
                     confidence=0.95, text_threshold=0.85, similarity=cosine)
    right = evaluate(_SqlStudent("select notes from t where state = 'Ohio';"), heldout, "text",
                     confidence=0.95, text_threshold=0.85, similarity=cosine)
    assert wrong.summary["agreement"] == 0.0 and right.summary["agreement"] == 1.0
    assert asked == []
