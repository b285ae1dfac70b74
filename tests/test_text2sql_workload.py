"""The public text-to-SQL workload reads text2sql-data's files as the benchmark needs them."""

from __future__ import annotations

import bz2
import json
from pathlib import Path

from bench.text2sql_workload import sql_items

WIKI = [
    {"sql": ['SELECT TABLEalias0.NOTES_FIELD FROM TABLE AS TABLEalias0 WHERE '
             'TABLEalias0.CURRENT_SLOGAN_FIELD = "var0" ;'],
     "sentences": [{"text": "Tell me what the notes are for South Australia",
                    "table-id": "1-1", "variables": {"var0": "SOUTH AUSTRALIA"}}]},
    {"sql": ['SELECT COUNT TABLEalias0.PICK_FIELD FROM TABLE AS TABLEalias0 WHERE '
             'TABLEalias0.YEAR_FIELD > "var0" ;'],
     "sentences": [{"text": "How many picks after 1990?", "table-id": "1-1",
                    "variables": {"var0": "1990"}}]},
    {"sql": ['SELECT TABLEalias0.NAME_FIELD FROM TABLE AS TABLEalias0 WHERE '
             'TABLEalias0.TEAM_FIELD = "var0" ;'],  # the value is not in the question: left out
     "sentences": [{"text": "Who played for them?", "table-id": "1-2",
                    "variables": {"var0": "Boston"}}]},
]
DB = [{"sql": ['SELECT COUNT( * ) FROM RESTAURANT AS RESTAURANTalias0 WHERE '
               'RESTAURANTalias0.CITY_NAME = "city_name0" ;'],
       "sentences": [{"text": "how many restaurants are in city_name0 ?",
                      "variables": {"city_name0": "san francisco"}}]}]
SCHEMA = ("Table Name, Field Name, Is Primary Key, Is Foreign Key, Type\n"
          "RESTAURANT, ID, y, n, int(11)\nRESTAURANT, CITY_NAME, n, y, varchar(255)\n"
          "-, -, -, -, -\nLOCATION, RESTAURANT_ID, y, y, int(11)\n")


def _root(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "wikisql.json.bz2").write_bytes(bz2.compress(json.dumps(WIKI).encode()))
    (data / "restaurants.json").write_text(json.dumps(DB))
    (data / "restaurants-schema.csv").write_text(SCHEMA)
    return tmp_path


def test_wikisql_questions_become_queries_over_their_tables_columns(tmp_path: Path) -> None:
    items = sql_items(_root(tmp_path), "sql_wikisql")
    assert [a["content"] for _, a in items] == [
        "SELECT notes FROM t WHERE current_slogan = 'South Australia'",  # as the question has it
        "SELECT COUNT(pick) FROM t WHERE year > 1990",  # a number unquoted
    ]
    users = [r["messages"][1]["content"] for r, _ in items]
    columns = users[0].split("\n")[0].removeprefix("Table t(").removesuffix(")").split(", ")
    assert sorted(columns) == ["current_slogan", "notes", "pick", "year"]  # the table's, once
    assert users[1].endswith("Question: How many picks after 1990?")


def test_a_database_task_has_its_schema_in_the_system_prompt_and_values_filled(
        tmp_path: Path) -> None:
    [(request, answer)] = sql_items(_root(tmp_path), "sql_restaurants")
    system, user = (m["content"] for m in request["messages"])
    assert system.endswith("RESTAURANT(ID, CITY_NAME)\nLOCATION(RESTAURANT_ID)")
    assert user == "how many restaurants are in san francisco ?"
    assert answer["content"].endswith('CITY_NAME = "san francisco" ;')
