"""`slimgate traces import`: each format, weights, batch joins, bad lines, idempotence,
scrubbing, static-text dedupe and tenancy, on SQLite and PostgreSQL (issue 23, point 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.cli import main
from gateway.config import Config, parse_config
from gateway.embed import SharedEmbedder
from gateway.offline.trace_import import TraceImportError, import_traces
from gateway.store.catalog import chat_exchanges
from gateway.store.db import connect
from tests.helpers import KEY_A, KEY_B, key_id
from tests.pg import store_table

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]
CALL = {"role": "assistant", "content": None, "tool_calls": [{
    "id": "call_1", "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}


def ft(user: str, answer: str = "billing", **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": "Sort the ticket."},
                         {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}], **extra}


def chat(user: str, answer: str = "billing") -> tuple[dict[str, Any], dict[str, Any]]:
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": user}]}
    response = {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": answer}}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}}
    return request, response


def write(path: Path, lines: list[Any]) -> str:
    path.write_bytes(b"".join((x if isinstance(x, bytes) else orjson.dumps(x)) + b"\n"
                              for x in lines))
    return str(path)


def config(tmp_path: Path, target: str | None = None, **store: Any) -> Config:
    return parse_config({"store": {**store_table(target or str(tmp_path / "s.db")), **store}})


def stored(cfg: Config) -> list[dict[str, Any]]:
    con = connect(cfg.store)
    try:
        rows = list(chat_exchanges(con))
        sources = dict(con.execute("SELECT request_id, source FROM exchanges").fetchall())
    finally:
        con.close()
    return [r | {"source": sources[r["request_id"]]} for r in rows]


def answer(row: dict[str, Any]) -> dict[str, Any]:
    msg: dict[str, Any] = row["response"]["choices"][0]["message"]
    return msg


def test_every_format_imports_as_teacher_traffic(store_target: str, tmp_path: Path) -> None:
    cfg = config(tmp_path, store_target)
    req, resp = chat("where is my parcel", "shipping")
    files = [
        write(tmp_path / "ft.jsonl", [ft("charged twice", tools=TOOLS, parallel_tool_calls=False)]),
        write(tmp_path / "pairs.jsonl", [{"request": req, "response": resp}]),
        write(tmp_path / "export.jsonl", [{"request": chat("refund?")[0], "api": "responses",
                                          "response": chat("refund?", "refunds")[1]}]),
        write(tmp_path / "in.jsonl", [{"custom_id": "r1", "method": "POST",
                                       "url": "/v1/chat/completions",
                                       "body": {**chat("weather in Paris")[0], "tools": TOOLS}}]),
        write(tmp_path / "out.jsonl", [{"id": "b1", "custom_id": "r1", "error": None, "response": {
            "status_code": 200, "body": {"choices": [{"index": 0, "message": CALL,
                                                      "finish_reason": "tool_calls"}]}}}]),
    ]
    report = import_traces(cfg, files)
    assert report.written == 4 and report.bad == 0
    assert set(report.formats.values()) == {"openai-finetune", "pairs", "slimgate",
                                            "openai-batch-input", "openai-batch-output"}
    rows = {r["source"]: r for r in stored(cfg)}
    assert set(rows) == {"import:openai-finetune", "import:pairs", "import:slimgate",
                         "import:openai-batch"}
    tuned = rows["import:openai-finetune"]
    assert tuned["request"]["tools"] == TOOLS and tuned["request"]["parallel_tool_calls"] is False
    assert [m["role"] for m in tuned["request"]["messages"]] == ["system", "user"]
    assert answer(tuned) == {"role": "assistant", "content": "billing"}
    assert rows["import:pairs"]["request"] == req and answer(rows["import:pairs"])["content"] == \
        "shipping"
    assert answer(rows["import:openai-batch"])["tool_calls"] == CALL["tool_calls"]
    assert all(r["backend"] == "teacher" and r["status"] == 200 for r in rows.values())


def test_each_trained_assistant_message_is_one_example_and_weight_0_is_context(
        tmp_path: Path) -> None:
    cfg = config(tmp_path)
    line = {"messages": [{"role": "user", "content": "hi"},
                         {"role": "assistant", "content": "hello", "weight": 0},
                         {"role": "user", "content": "my app crashes"},
                         {"role": "assistant", "content": "bug", "weight": 1},
                         {"role": "user", "content": "and it is slow"},
                         {"role": "assistant", "content": "performance"}]}
    report = import_traces(cfg, [write(tmp_path / "ft.jsonl", [line])])
    assert report.written == 2  # "hello" is context only
    rows = sorted(stored(cfg), key=lambda r: len(r["request"]["messages"]))
    assert [answer(r)["content"] for r in rows] == ["bug", "performance"]
    context = rows[0]["request"]["messages"]
    assert context[1] == {"role": "assistant", "content": "hello"}  # no `weight` sent on
    assert len(rows[1]["request"]["messages"]) == 5


def test_batch_files_join_by_custom_id_and_failures_are_skipped_and_counted(
        tmp_path: Path) -> None:
    cfg = config(tmp_path)
    inputs = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
               "body": chat(f"question {i}")[0]} for i in range(5)]
    inputs.append({"custom_id": "e1", "method": "POST", "url": "/v1/embeddings",
                   "body": {"model": "m", "input": "x"}})
    ok = {"status_code": 200, "body": chat("q", "answer")[1]}
    outputs = [
        {"custom_id": "r2", "response": ok, "error": None},  # out of order: joined by id
        {"custom_id": "r0", "response": ok, "error": None},
        {"custom_id": "r1", "response": None, "error": {"code": "timeout", "message": "x"}},
        {"custom_id": "r3", "response": {"status_code": 500, "body": {}}, "error": None},
        {"custom_id": "e1", "response": {"status_code": 200, "body": {}}, "error": None},
        {"custom_id": "zz", "response": ok, "error": None},  # in no input file
    ]
    report = import_traces(cfg, [write(tmp_path / "in.jsonl", inputs),
                                 write(tmp_path / "out.jsonl", outputs)])
    assert report.written == 2
    assert report.skipped == {"batch request failed (error)": 1,
                              "batch request answered HTTP 500": 1,
                              "batch request to /v1/embeddings, not chat completions": 1,
                              "batch input line without an output line": 1}  # r4
    assert report.bad == 1 and report.bad_lines[0].endswith(
        "out.jsonl:6: custom_id 'zz' is in no input file given")
    assert sorted(r["request"]["messages"][0]["content"] for r in stored(cfg)) == [
        "question 0", "question 2"]
    with pytest.raises(TraceImportError, match="without the output file"):
        import_traces(cfg, [str(tmp_path / "in.jsonl")])


def test_a_bad_line_is_reported_by_number_and_none_of_it_is_written(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    half_good = {"messages": [{"role": "user", "content": "a"},
                              {"role": "assistant", "content": "first target"},
                              {"role": "user", "content": "b"},
                              {"role": "assistant", "weight": 3, "content": "x"}]}
    path = write(tmp_path / "ft.jsonl", [ft("one"), b"{not json", half_good, b"", ft("two"),
                                         {"request": {}, "response": {}}])
    report = import_traces(cfg, [path])
    assert report.written == 2 and report.bad == 3
    assert report.bad_lines[0].startswith(f"{path}:2: not JSON (")
    assert report.bad_lines[1:] == [f"{path}:3: messages[3].weight is 3: use 0 or 1",
                                    f"{path}:6: not a line of OpenAI chat fine-tuning JSONL"]
    assert "first target" not in str(stored(cfg))  # the bad line's good part is not written


def test_a_file_whose_first_line_fits_no_format_is_refused_by_name_and_line(
        tmp_path: Path) -> None:
    cfg = config(tmp_path)
    good = write(tmp_path / "good.jsonl", [ft("one")])
    bad = write(tmp_path / "bad.jsonl", [b"", {"prompt": "x", "completion": "y"}])
    with pytest.raises(TraceImportError, match=r"bad\.jsonl:2: fits no format"):
        import_traces(cfg, [good, bad])
    assert stored(cfg) == []  # refused before anything is written


def test_importing_twice_adds_nothing_and_repeated_lines_are_kept(
        store_target: str, tmp_path: Path) -> None:
    cfg = config(tmp_path, store_target)
    path = tmp_path / "ft.jsonl"
    write(path, [ft("one"), ft("two"), ft("one")])  # "one" twice: both are examples
    assert import_traces(cfg, [str(path)]).written == 3
    again = import_traces(cfg, [str(path)])
    assert (again.written, again.duplicates) == (0, 3)
    write(path, [ft("one"), ft("two"), ft("one"), ft("three")])  # the file grew
    assert import_traces(cfg, [str(path)]).written == 1
    assert len(stored(cfg)) == 4


def test_scrubbing_and_static_text_dedupe_apply_as_to_live_rows(tmp_path: Path) -> None:
    cfg = config(tmp_path, scrub=True)
    system = "You sort support tickets for the help desk. " * 10  # over texts.MIN_BYTES
    line = {"messages": [{"role": "system", "content": system},
                         {"role": "user", "content": "I am jane.doe@example.com, refund me"},
                         {"role": "assistant", "content": "Refund sent to jane.doe@example.com"}]}
    import_traces(cfg, [write(tmp_path / "ft.jsonl", [line, ft("x")])])
    con = connect(cfg.store)
    raw = [tuple(r) for r in con.execute("SELECT request, request_texts, response FROM exchanges")]
    texts = con.execute("SELECT COUNT(*) FROM texts").fetchone()[0]
    con.close()
    assert "jane.doe@example.com" not in str(raw) and "<EMAIL_1>" in str(raw)
    assert texts == 1 and system not in str(raw)  # the prompt is stored once, by reference
    (row,) = [r for r in stored(cfg) if r["request"]["messages"][0]["content"] == system]
    assert answer(row)["content"] == "Refund sent to <EMAIL_1>"


def tenants_config(tmp_path: Path) -> Config:
    return parse_config({"store": {"path": str(tmp_path / "s.db")}, "server": {
        "tenants": {"acme": [key_id(KEY_A)], "beta": [key_id(KEY_B)]}}})


def test_with_tenants_the_tenant_is_required_and_rows_are_only_its_own(
        tmp_path: Path, shared_embedder: SharedEmbedder) -> None:
    from distill.pipeline import discover_tasks
    from gateway.store.catalog import list_tasks
    from gateway.task_assign import TaskAssigner
    from gateway.task_ids import task_tenant

    cfg = tenants_config(tmp_path)
    path = write(tmp_path / "ft.jsonl", [ft(f"ticket {i}") for i in range(30)])
    with pytest.raises(TraceImportError, match=r"--tenant \(acme, beta\)"):
        import_traces(cfg, [path])
    with pytest.raises(TraceImportError, match="no tenant 'gamma'"):
        import_traces(cfg, [path], tenant="gamma")
    report = import_traces(cfg, [path], tenant="acme")
    assert report.written == 30 and report.tenant == "acme"
    con = connect(cfg.store)
    assert [tuple(r) for r in con.execute("SELECT DISTINCT key_id FROM exchanges")] == [
        (key_id(KEY_A),)]
    discover_tasks(con, cfg, shared_embedder)
    tasks = list_tasks(con)
    con.close()
    assert [task_tenant(t.info) for t in tasks] == ["acme"]  # beta's discovery has nothing
    assigner = TaskAssigner.from_tasks(tasks)
    probe = {"model": "m", "messages": ft("ticket 99")["messages"][:2]}
    assert assigner.assign(probe, None, "acme").task == tasks[0].id  # acme's live traffic
    assert assigner.assign(probe, None, "beta").task is None


def test_same_history_for_two_tenants_is_two_sets_of_rows(tmp_path: Path) -> None:
    cfg = tenants_config(tmp_path)
    path = write(tmp_path / "ft.jsonl", [ft("one"), ft("two")])
    assert import_traces(cfg, [path], tenant="acme").written == 2
    assert import_traces(cfg, [path], tenant="beta").written == 2  # not duplicates of acme's


def test_keys_without_tenants_need_the_key_id(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIMGATE_API_KEYS", f"{KEY_A},{KEY_B}")
    cfg = config(tmp_path)
    path = write(tmp_path / "ft.jsonl", [ft("one")])
    with pytest.raises(TraceImportError, match=f"--tenant KEY_ID .*{key_id(KEY_A)}"):
        import_traces(cfg, [path])
    with pytest.raises(TraceImportError, match="is no key id"):
        import_traces(cfg, [path], tenant="0123456789ab")
    assert import_traces(cfg, [path], tenant=key_id(KEY_B)).tenant == key_id(KEY_B)


def test_metadata_task_is_scoped_to_the_tenant_as_a_live_tag_is(tmp_path: Path) -> None:
    cfg = tenants_config(tmp_path)
    req, resp = chat("x")
    tagged = {"request": {**req, "metadata": {"task": "triage"}}, "response": resp}
    import_traces(cfg, [write(tmp_path / "p.jsonl", [tagged])], tenant="beta")
    assert [r["task"] for r in stored(cfg)] == ["beta.triage"]


def test_cli_reports_counts_and_bad_lines_with_exit_codes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.toml").write_text(f'[store]\npath = "{tmp_path / "s.db"}"\n')
    good = write(tmp_path / "ft.jsonl", [ft("one"), ft("two")])
    assert main(["traces", "import", "--config", str(tmp_path / "c.toml"), good]) == 0
    out = capsys.readouterr().out
    assert "imported 2 of 2 exchanges" in out and "OpenAI chat fine-tuning JSONL" in out
    bad = write(tmp_path / "bad.jsonl", [ft("three"), b"[1]"])
    assert main(["traces", "import", "--config", str(tmp_path / "c.toml"), bad,
                 "--progress"]) == 1
    captured = capsys.readouterr()
    assert f"{bad}:2: not a JSON object" in captured.out and "100.0%" in captured.err
    assert main(["traces", "import", "--config", str(tmp_path / "c.toml"),
                 str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_the_report_counts_imported_history_only_when_asked(tmp_path: Path) -> None:
    from gateway.report import build_report

    cfg = config(tmp_path)
    import_traces(cfg, [write(tmp_path / "ft.jsonl", [ft("one"), ft("two"), ft("three")])])
    con = connect(cfg.store)
    con.execute("INSERT INTO exchanges (request_id, created_at, endpoint, model, backend, "
                "stream, status) VALUES ('live-1', ?, 'chat/completions', 'm', 'teacher', 0, "
                "200)", (1e9,))
    con.close()
    live = build_report(cfg.store, since=0.0)
    assert (live["totals"]["requests"], live["totals"]["imported_exchanges"]) == (1, 3)
    assert build_report(cfg.store, since=0.0, imported=True)["totals"]["requests"] == 4


def test_what_traces_export_writes_imports_into_another_store_unchanged(tmp_path: Path) -> None:
    from gateway.offline.traces import export_traces

    first = config(tmp_path, str(tmp_path / "a.db"))
    system = "You sort support tickets for the help desk. " * 10  # cut to `texts` and restored
    line = {"messages": [{"role": "system", "content": system},
                         {"role": "user", "content": "charged twice"},
                         {"role": "assistant", "content": "billing"}], "tools": TOOLS}
    import_traces(first, [write(tmp_path / "ft.jsonl", [line, ft("crash", "bug")])])
    assert export_traces(first.store, tmp_path / "export.jsonl") == 2
    second = config(tmp_path, str(tmp_path / "b.db"))
    report = import_traces(second, [str(tmp_path / "export.jsonl")])
    assert report.formats == {str(tmp_path / "export.jsonl"): "slimgate"} and report.written == 2

    def pairs(cfg: Config) -> list[tuple[bytes, bytes]]:
        return sorted((orjson.dumps(r["request"], option=orjson.OPT_SORT_KEYS),
                       orjson.dumps(answer(r))) for r in stored(cfg))

    assert pairs(first) == pairs(second)
