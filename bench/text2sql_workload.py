"""Text-to-SQL tasks from public data, as chat exchanges a SQL-writing agent would send.

Read from a checkout of github.com/jkkummerfeld/text2sql-data (Finegan-Dollak et al. 2018,
human-written questions with their SQL):
- `sql_wikisql`: WikiSQL — a different table almost every request (its columns in the
  user message, gathered from every question asked of that table), one SELECT with an
  aggregate and conditions; values written as the question writes them.
- `sql_geography`, `sql_restaurants`, `sql_scholar`, `sql_advising`: one database each
  (its schema in the system prompt), paraphrased questions, the dataset's SQL with the
  question's values filled in.
The gold SQL is the teacher's answer. Nothing here was written for slimgate.
"""

from __future__ import annotations

import bz2
import json
import random
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

SQL_TASKS = ("sql_wikisql", "sql_geography", "sql_restaurants", "sql_scholar", "sql_advising")
WIKISQL_SYSTEM = ("You write SQLite queries. Given a table and a question, answer with one SQL "
                  "query over table t and nothing else.")
DB_SYSTEM = ("You translate questions about this database into SQL. Answer with one SQL query "
             "and nothing else.\n\nSchema:\n")
_AGGREGATES = ("COUNT", "MAX", "MIN", "SUM", "AVG")
_WIKI = re.compile(r"^SELECT (?:(COUNT|MAX|MIN|SUM|AVG) )?TABLEalias0\.(\w+) FROM TABLE AS "
                   r"TABLEalias0(?: WHERE (.*))? ;$")
_COND = re.compile(r'^TABLEalias0\.(\w+) ([=<>]) "(\w+)"$')


def _read(root: Path, name: str) -> list[dict[str, Any]]:
    path = root / "data" / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    with bz2.open(root / "data" / f"{name}.json.bz2", "rt") as f:
        return json.load(f)


def _column(field: str) -> str:
    return field.removesuffix("_FIELD").lower()


def _literal(value: str) -> str:
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return value
    return "'" + value.replace("'", "''") + "'"


def _in_question(value: str, question: str) -> str | None:
    """The value as the question writes it (WikiSQL's values are the table's spelling)."""
    at = question.casefold().find(value.casefold())
    return None if at < 0 else question[at:at + len(value)]


def _wikisql_sql(sql: str, question: str, variables: dict[str, str]) -> tuple[str, list[str]]:
    m = _WIKI.match(sql)
    if m is None:
        raise ValueError(sql)
    agg, field, where = m.groups()
    columns = [_column(field)]
    select = f"{agg}({columns[0]})" if agg else columns[0]
    conds = []
    for part in (where.split(" AND ") if where else []):
        c = _COND.match(part)
        if c is None:
            raise ValueError(part)
        value = _in_question(variables[c.group(3)], question)
        if value is None:
            raise ValueError(c.group(3))
        columns.append(_column(c.group(1)))
        conds.append(f"{columns[-1]} {c.group(2)} {_literal(value)}")
    tail = f" WHERE {' AND '.join(conds)}" if conds else ""
    return f"SELECT {select} FROM t{tail}", columns


def wikisql_pairs(root: Path) -> list[tuple[str, str]]:
    """(user message, SQL) for every WikiSQL question whose values the question spells out.
    A table's columns are those any of its questions use, in a per-table shuffled order."""
    rows = []
    by_table: dict[str, set[str]] = defaultdict(set)
    for entry in _read(root, "wikisql"):
        for s in entry["sentences"]:
            try:
                sql, columns = _wikisql_sql(entry["sql"][0], s["text"], s["variables"])
            except (ValueError, KeyError):
                continue
            rows.append((s["table-id"], s["text"], sql))
            by_table[s["table-id"]].update(columns)
    out = []
    for table, question, sql in rows:
        columns = sorted(by_table[table])
        random.Random(table).shuffle(columns)
        out.append((f"Table t({', '.join(columns)})\nQuestion: {question}", sql))
    return out


def schema_text(root: Path, name: str) -> str:
    """`TABLE(COLUMN, ...)` lines from the dataset's schema file."""
    tables: dict[str, list[str]] = {}
    lines = (root / "data" / f"{name}-schema.csv").read_text().splitlines()[1:]
    for line in lines:
        table, field = (p.strip() for p in line.split(",")[:2])
        if table != "-":
            tables.setdefault(table, []).append(field)
    return "\n".join(f"{t}({', '.join(cols)})" for t, cols in tables.items())


def _fill(text: str, variables: dict[str, str]) -> str:
    for name in sorted(variables, key=len, reverse=True):  # city_name10 before city_name1
        text = text.replace(name, variables[name])
    return text


def database_pairs(root: Path, name: str) -> list[tuple[str, str]]:
    """(question, SQL) with the question's own values filled into both."""
    out = []
    for entry in _read(root, name):
        for s in entry["sentences"]:
            out.append((_fill(s["text"], s["variables"]), _fill(entry["sql"][0],
                                                                 s["variables"])))
    return out


def sql_items(root: Path, task: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(request without `model`, gold assistant message) for one of SQL_TASKS."""
    if task == "sql_wikisql":
        system, pairs = WIKISQL_SYSTEM, wikisql_pairs(root)
    else:
        name = task.removeprefix("sql_")
        system, pairs = DB_SYSTEM + schema_text(root, name), database_pairs(root, name)
    return [({"messages": [{"role": "system", "content": system},
                           {"role": "user", "content": user}], "max_tokens": 256},
             {"role": "assistant", "content": sql}) for user, sql in pairs]


def normalized_sql(text: str) -> str:
    """The query with its whitespace collapsed and a trailing semicolon dropped: the bench's
    exact match (stricter than `policies.code_text`, which also folds unquoted words' case)."""
    return " ".join(text.strip().rstrip(";").split())
