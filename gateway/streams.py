"""Server-sent events out, and a stream of chunks assembled back into one response.

The recorder stores a streamed answer as if it had not been streamed: one
chat.completion (or text_completion) object with the final message, tool calls included.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


def sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _merge_tool_calls(slots: dict[int, dict[str, Any]], deltas: list[dict[str, Any]]) -> None:
    for d in deltas:
        idx = d.get("index", len(slots))
        slot = slots.setdefault(
            idx, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if d.get("id"):
            slot["id"] = d["id"]
        if d.get("type"):
            slot["type"] = d["type"]
        fn = d.get("function") or {}
        if fn.get("name"):
            slot["function"]["name"] += fn["name"]
        if fn.get("arguments"):
            slot["function"]["arguments"] += fn["arguments"]


def assemble_chat(chunks: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Fold chat.completion.chunk objects into one chat.completion object."""
    head: dict[str, Any] = {}
    usage = None
    choices: dict[int, dict[str, Any]] = {}
    calls: dict[int, dict[int, dict[str, Any]]] = {}
    for chunk in chunks:
        if not head:
            head = {k: chunk.get(k) for k in ("id", "created", "model", "system_fingerprint")}
        if chunk.get("usage"):
            usage = chunk["usage"]
        for c in chunk.get("choices") or ():
            i = c.get("index", 0)
            ch = choices.setdefault(
                i, {"index": i, "message": {"role": "assistant", "content": None},
                    "finish_reason": None, "logprobs": None},
            )
            delta = c.get("delta") or {}
            msg = ch["message"]
            if delta.get("role"):
                msg["role"] = delta["role"]
            if delta.get("content"):
                msg["content"] = (msg["content"] or "") + delta["content"]
            if delta.get("refusal"):
                msg["refusal"] = (msg.get("refusal") or "") + delta["refusal"]
            if delta.get("tool_calls"):
                _merge_tool_calls(calls.setdefault(i, {}), delta["tool_calls"])
            if c.get("logprobs"):
                lp = ch["logprobs"] or {"content": []}
                lp["content"].extend((c["logprobs"] or {}).get("content") or [])
                ch["logprobs"] = lp
            if c.get("finish_reason"):
                ch["finish_reason"] = c["finish_reason"]
    for i, slots in calls.items():
        choices[i]["message"]["tool_calls"] = [slots[k] for k in sorted(slots)]
    out = {"object": "chat.completion", **head, "choices": [choices[k] for k in sorted(choices)]}
    if usage is not None:
        out["usage"] = usage
    return out


def assemble_text(chunks: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Fold legacy text_completion stream chunks into one text_completion object."""
    head: dict[str, Any] = {}
    usage = None
    choices: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        if not head:
            head = {k: chunk.get(k) for k in ("id", "created", "model")}
        if chunk.get("usage"):
            usage = chunk["usage"]
        for c in chunk.get("choices") or ():
            i = c.get("index", 0)
            ch = choices.setdefault(i, {"index": i, "text": "", "finish_reason": None})
            ch["text"] += c.get("text") or ""
            if c.get("finish_reason"):
                ch["finish_reason"] = c["finish_reason"]
    out = {"object": "text_completion", **head, "choices": [choices[k] for k in sorted(choices)]}
    if usage is not None:
        out["usage"] = usage
    return out


def chunks_from_response(resp: dict[str, Any], piece: int = 24) -> list[dict[str, Any]]:
    """A whole chat.completion as the chunk sequence a stream would have carried.

    Used where an answer is complete before its first byte is sent (a student's answer is
    checked against the request's contract first), so the client still gets a stream.
    """
    head = {"id": resp.get("id"), "object": "chat.completion.chunk",
            "created": resp.get("created"), "model": resp.get("model")}
    out: list[dict[str, Any]] = []
    for choice in resp.get("choices") or ():
        i, msg = choice.get("index", 0), choice.get("message") or {}
        out.append({**head, "choices": [{"index": i, "delta": {"role": "assistant",
                                                               "content": ""},
                                         "finish_reason": None}]})
        if msg.get("tool_calls"):
            calls = [{"index": k, **c} for k, c in enumerate(msg["tool_calls"])]
            out.append({**head, "choices": [{"index": i, "delta": {"tool_calls": calls},
                                             "finish_reason": None}]})
        text = msg.get("content") or ""
        for start in range(0, len(text), piece):
            out.append({**head, "choices": [{"index": i,
                                             "delta": {"content": text[start:start + piece]},
                                             "finish_reason": None}]})
        out.append({**head, "choices": [{"index": i, "delta": {},
                                         "finish_reason": choice.get("finish_reason")}]})
    if resp.get("usage"):
        out.append({**head, "choices": [], "usage": resp["usage"]})
    return out
