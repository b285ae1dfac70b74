"""The files `slimgate traces import` reads, each turned into chat exchanges.

A file's format is decided by its first line: slimgate's own `traces export` lines, plain
`{request, response}` chat.completion pairs, OpenAI chat fine-tuning JSONL (each assistant
message without `weight: 0` is one example: the conversation before it, then it), or an
OpenAI Batch API input or output file (the two joined by `custom_id`). Later lines that do
not fit their file's format are `Bad`, with the file and line; nothing is guessed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

FORMATS = {
    "slimgate": "slimgate traces (`slimgate traces export`)",
    "pairs": "{request, response} chat.completion pairs",
    "openai-finetune": "OpenAI chat fine-tuning JSONL",
    "openai-batch-input": "OpenAI Batch API input",
    "openai-batch-output": "OpenAI Batch API output",
}
EXPECTED = ("expected one of: {\"request\", \"response\"} (slimgate traces or pairs), "
            "{\"messages\"} (OpenAI fine-tuning), {\"custom_id\", \"body\"} or "
            "{\"custom_id\", \"response\"} (OpenAI Batch API input / output)")
CHAT_URLS = ("/v1/chat/completions", "/chat/completions")
ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
FINETUNE_FIELDS = ("tools", "parallel_tool_calls", "functions")  # request fields of a line


class TraceImportError(Exception):
    """Nothing is imported: a file is missing or fits no format, or the store or tenant
    does not allow it."""


@dataclass(slots=True)
class Example:
    """One exchange to record: the chat request, the teacher's chat.completion."""

    request: dict[str, Any]
    response: dict[str, Any]
    api: str  # what the client called: chat/completions, or responses (slimgate traces)
    path: str
    line: int


@dataclass(slots=True)
class Bad:
    """A line that fits no format or breaks its file's: counted, reported, never written."""

    path: str
    line: int
    reason: str


@dataclass(slots=True)
class Skipped:
    """A well-formed line with nothing to learn from (a failed batch request, ...)."""

    reason: str


Item = Example | Bad | Skipped


def numbered_lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, line) of a file's non-blank lines."""
    offset = 0
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            start, offset = offset, offset + len(line)
            if line.strip():
                yield n, start, line


def detect(path: Path) -> str:
    """The format of `path`, from its first non-blank line; TraceImportError if none fits."""
    try:
        first = next(numbered_lines(path), None)
    except OSError as e:
        raise TraceImportError(f"cannot read '{path}': {e.strerror}") from None
    if first is None:
        raise TraceImportError(f"{path}: the file is empty")
    n, _, line = first
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise TraceImportError(f"{path}:{n}: not JSON ({e})") from None
    fmt = format_of(obj)
    if fmt is None:
        raise TraceImportError(f"{path}:{n}: fits no format this importer reads; {EXPECTED}")
    return fmt


def format_of(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    if "custom_id" in obj:
        if "body" in obj:
            return "openai-batch-input"
        if "response" in obj or "error" in obj:
            return "openai-batch-output"
        return None
    if "request" in obj and "response" in obj:
        return "slimgate" if "api" in obj else "pairs"
    if "messages" in obj:
        return "openai-finetune"
    return None


def request_problem(req: Any) -> str | None:
    """Why `req` is no chat request we can learn from, or None."""
    if not isinstance(req, dict):
        return "the request is not an object"
    msgs = req.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return "the request has no 'messages' list"
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            return f"messages[{i}] is not a chat message with a known role"
    return None


def response_problem(resp: Any) -> str | None:
    """Why `resp` is no chat.completion with an assistant message, or None."""
    if not isinstance(resp, dict):
        return "the response is not an object"
    choices = resp.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return "the response is not a chat.completion with 'choices'"
    msg = choices[0].get("message")
    if not isinstance(msg, dict) or msg.get("role", "assistant") != "assistant":
        return "choices[0] has no assistant 'message'"
    return None


def completion(answer: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion holding `answer` (fine-tuning files keep no response object)."""
    finish = ("tool_calls" if answer.get("tool_calls") else
              "function_call" if answer.get("function_call") else "stop")
    return {"object": "chat.completion", "choices": [
        {"index": 0, "message": answer, "finish_reason": finish}]}


def load_object(path: Path, n: int, line: bytes) -> dict[str, Any] | Bad:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        return Bad(str(path), n, f"not JSON ({e})")
    return obj if isinstance(obj, dict) else Bad(str(path), n, "not a JSON object")


def read_pairs(path: Path, fmt: str) -> Iterator[tuple[int, list[Item]]]:
    """slimgate traces and {request, response} pairs: one example a line."""
    for n, _, line in numbered_lines(path):
        obj = load_object(path, n, line)
        if isinstance(obj, Bad):
            yield len(line), [obj]
            continue
        if format_of(obj) not in ("slimgate", "pairs"):
            yield len(line), [Bad(str(path), n, f"not a line of {FORMATS[fmt]}")]
            continue
        problem = request_problem(obj["request"]) or response_problem(obj["response"])
        api = obj.get("api") or "chat/completions"
        if problem is None and api not in ("chat/completions", "responses"):
            problem = f"'api' is {str(api)[:40]!r}, not chat/completions or responses"
        yield len(line), [Bad(str(path), n, problem) if problem else
                          Example(obj["request"], obj["response"], api, str(path), n)]


def _unweighted(m: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in m.items() if k != "weight"}


def finetune_examples(obj: dict[str, Any], path: str, n: int) -> list[Item]:
    """A fine-tuning line's examples: one per assistant message it trains on."""
    msgs = obj.get("messages")
    problem = request_problem({"messages": msgs})
    if problem or not isinstance(msgs, list):
        return [Bad(path, n, problem or "no messages")]
    extras = {k: obj[k] for k in FINETUNE_FIELDS if k in obj}
    targets = []
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        weight = m.get("weight", 1)
        if weight not in (0, 1) or isinstance(weight, bool):
            return [Bad(path, n, f"messages[{i}].weight is {weight!r}: use 0 or 1")]
        if weight == 1:
            if i == 0:
                return [Bad(path, n, "messages[0] is an assistant message: nothing came before")]
            if not (isinstance(m.get("content"), str) or m.get("tool_calls")
                    or m.get("function_call")):
                return [Bad(path, n, f"messages[{i}] has no content or tool calls")]
            targets.append(i)
    if not targets:
        return [Skipped("fine-tuning line without a trained assistant message (all weight 0)")]
    return [Example({"messages": [_unweighted(m) for m in msgs[:i]], **extras},
                    completion(_unweighted(msgs[i])), "chat/completions", path, n)
            for i in targets]


def read_finetune(path: Path) -> Iterator[tuple[int, list[Item]]]:
    for n, _, line in numbered_lines(path):
        obj = load_object(path, n, line)
        if isinstance(obj, Bad):
            yield len(line), [obj]
        elif format_of(obj) != "openai-finetune":
            yield len(line), [Bad(str(path), n,
                                        f"not a line of {FORMATS['openai-finetune']}")]
        else:
            yield len(line), finetune_examples(obj, str(path), n)
