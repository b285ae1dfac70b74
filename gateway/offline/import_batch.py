"""OpenAI Batch API files as chat exchanges: input and output lines joined by `custom_id`.

The request is the input line's `body`, the answer the output line's `response.body`. An
output line with an `error` or a `status_code` other than 200 has no answer to learn from:
skipped and counted, as are input lines no output answers (an expired or cancelled batch).
Inputs are indexed by byte offset and read back when their output arrives, so a large batch
is never held in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from gateway.offline.import_formats import (
    CHAT_URLS,
    Bad,
    Example,
    Item,
    Skipped,
    format_of,
    load_object,
    numbered_lines,
    request_problem,
    response_problem,
)


@dataclass(slots=True)
class _Input:
    path: Path
    offset: int
    line: int


def _index(inputs: list[Path]) -> tuple[dict[str, _Input], list[Bad]]:
    """custom_id -> where its input line is; lines without a usable custom_id are bad."""
    index: dict[str, _Input] = {}
    bad: list[Bad] = []
    for path in inputs:
        for n, offset, line in numbered_lines(path):
            obj = load_object(path, n, line)
            if isinstance(obj, Bad):
                bad.append(obj)
            elif format_of(obj) != "openai-batch-input" or not isinstance(obj["custom_id"], str):
                bad.append(Bad(str(path), n, "not an OpenAI Batch API input line "
                                             "(custom_id, method, url, body)"))
            elif obj["custom_id"] in index:
                first = index[obj["custom_id"]]
                bad.append(Bad(str(path), n, f"custom_id {obj['custom_id'][:64]!r} again "
                                             f"(first at {first.path}:{first.line})"))
            else:
                index[obj["custom_id"]] = _Input(path, offset, n)
    return index, bad


def _read_input(where: _Input) -> dict[str, object]:
    with where.path.open("rb") as f:
        f.seek(where.offset)
        obj = orjson.loads(f.readline())
    assert isinstance(obj, dict)  # checked when indexed
    return obj


def read_batch(inputs: list[Path], outputs: list[Path]) -> Iterator[tuple[int, list[Item]]]:
    """(bytes read, items) per output line, then the inputs nothing answered as skipped."""
    index, bad = _index(inputs)
    if bad:
        yield 0, list[Item](bad)
    answered: set[str] = set()
    for path in outputs:
        for n, _, line in numbered_lines(path):
            yield len(line), [_join(path, n, line, index, answered)]
    unanswered = len(index) - len(answered)
    if unanswered:
        yield 0, [Skipped("batch input line without an output line")] * unanswered


def _join(path: Path, n: int, line: bytes, index: dict[str, _Input],
          answered: set[str]) -> Item:
    obj = load_object(path, n, line)
    if isinstance(obj, Bad):
        return obj
    custom_id = obj.get("custom_id")
    if format_of(obj) != "openai-batch-output" or not isinstance(custom_id, str):
        return Bad(str(path), n, "not an OpenAI Batch API output line (custom_id, response, "
                                 "error)")
    where = index.get(custom_id)
    if where is None:
        return Bad(str(path), n, f"custom_id {custom_id[:64]!r} is in no input file given")
    if custom_id in answered:
        return Bad(str(path), n, f"custom_id {custom_id[:64]!r} answered twice")
    answered.add(custom_id)
    response = obj.get("response")
    if obj.get("error") is not None:
        return Skipped("batch request failed (error)")
    if not isinstance(response, dict):
        return Bad(str(path), n, "'response' is not an object")
    if response.get("status_code") != 200:
        return Skipped(f"batch request answered HTTP {response.get('status_code')}")
    request = _read_input(where)
    if request.get("url") not in CHAT_URLS:
        return Skipped(f"batch request to {str(request.get('url'))[:60]}, not chat completions")
    body = request.get("body")
    problem = request_problem(body)
    if problem:
        return Bad(str(where.path), where.line, problem)
    answer = response.get("body")
    problem = response_problem(answer)
    if problem:
        return Bad(str(path), n, f"response.body: {problem}")
    assert isinstance(body, dict) and isinstance(answer, dict)
    return Example(body, answer, "chat/completions", str(path), n)
