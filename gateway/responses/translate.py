"""Responses API ⇄ chat completions, both ways.

`to_chat` turns a Responses request (with the stored history of `previous_response_id`)
into the chat-completions request the loop sees: it is what task assignment fingerprints,
what is recorded and distilled, what a student answers, and what a translate-mode upstream
gets. `chat_to_response` renders a chat answer as a Response object; `response_to_chat`
does the reverse for a native upstream's answer, so every answer is recorded in one form.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import InvalidRequest


def new_id(prefix: str) -> str:
    """An id shaped like OpenAI's (`resp_…`, `msg_…`, `fc_…`)."""
    return f"{prefix}_{secrets.token_hex(24)}"


# --- input items ----------------------------------------------------------------------------


def _parts(content: Any, text_type: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": text_type, "text": content}]
    return list(content or [])


def normalize_input(value: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """This turn's input as items with ids, as stored and listed by `input_items`."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    out = []
    for item in value:
        kind = item.get("type") or "message"
        if kind == "message":
            text_type = "output_text" if item.get("role") == "assistant" else "input_text"
            item = {**item, "type": "message", "content": _parts(item.get("content"), text_type)}
            item.setdefault("id", new_id("msg"))
            item.setdefault("status", "completed")
        elif kind == "function_call":
            item = {**item, "id": item.get("id") or new_id("fc")}
        elif kind == "function_call_output":
            item = {**item, "id": item.get("id") or new_id("fco")}
            item.setdefault("status", "completed")
        out.append(item)
    return out


def for_native(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored items as input for a native upstream: ids dropped (an upstream would look them
    up in its own store), except reasoning items', which are references by design."""
    return [i if i.get("type") == "reasoning" else {k: v for k, v in i.items() if k != "id"}
            for i in items]


# --- request: Responses → chat -----------------------------------------------------------------


@dataclass(slots=True)
class ChatView:
    """The chat-completions form of a Responses request."""

    body: dict[str, Any]
    # What chat completions cannot carry (hosted tools, reasoning, item references), as
    # (param, what): dropped from the loop's view, refused in translate mode.
    untranslatable: list[tuple[str, str]] = field(default_factory=list)

    def require_translatable(self) -> None:
        if self.untranslatable:
            param, what = self.untranslatable[0]
            raise InvalidRequest(
                f"{what} needs an upstream that serves the Responses API natively; this "
                "model is served by translation to chat completions "
                "(set `responses = \"native\"` on a model that supports it).", param=param)


def _chat_content(content: list[dict[str, Any]], view: ChatView) -> str | list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for p in content:
        kind = p.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": p.get("text") or ""})
        elif kind == "input_image" and p.get("image_url"):
            parts.append({"type": "image_url", "image_url": {
                "url": p["image_url"], "detail": p.get("detail") or "auto"}})
        elif kind == "input_file":
            keys = ("file_id", "file_data", "filename")
            parts.append({"type": "file", "file": {k: p[k] for k in keys if p.get(k)}})
        elif kind != "refusal":
            view.untranslatable.append(("input", f"Content of type '{kind}'"))
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts) if len(parts) == 1 else (
            "\n".join(p["text"] for p in parts) if parts else "")
    return parts


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    return "".join(p.get("text") or "" for p in output or () if isinstance(p, dict))


def _messages(items: list[dict[str, Any]], view: ChatView) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type") or "message"
        if kind == "message":
            role = item.get("role")
            content = _parts(item.get("content"), "input_text")
            if role == "assistant":
                refusal = "".join(p.get("refusal") or "" for p in content
                                  if p.get("type") == "refusal")
                text = _output_text([p for p in content if p.get("type") != "refusal"])
                msg: dict[str, Any] = {"role": "assistant", "content": text or None}
                if refusal:
                    msg["refusal"] = refusal
                out.append(msg)
            else:
                out.append({"role": role, "content": _chat_content(content, view)})
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item.get("arguments") or ""}}
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            out.append({"role": "tool", "tool_call_id": item["call_id"],
                        "content": _output_text(item.get("output"))})
        elif kind != "reasoning":  # a model's reasoning is not replayed to a chat model
            view.untranslatable.append(("input", f"An input item of type '{kind}'"))
    return out


_FORMATS = {"json_object": lambda f: {"type": "json_object"},
            "json_schema": lambda f: {"type": "json_schema", "json_schema": {
                k: f[k] for k in ("name", "schema", "description", "strict") if k in f}}}
_COPIED = ("temperature", "top_p", "parallel_tool_calls", "user", "metadata", "service_tier",
           "top_logprobs")


def to_chat(body: dict[str, Any], items: list[dict[str, Any]]) -> ChatView:
    """The chat request for `body`, whose whole conversation (history first) is `items`."""
    view = ChatView({"model": body["model"]})
    messages = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    messages.extend(_messages(items, view))
    chat = view.body
    chat["messages"] = messages
    tools = []
    for i, tool in enumerate(body.get("tools") or ()):
        if tool.get("type") == "function":
            fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
            tools.append({"type": "function", "function": fn})
        else:
            view.untranslatable.append((f"tools[{i}]", f"A tool of type '{tool.get('type')}'"))
    if tools:
        chat["tools"] = tools
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        chat["tool_choice"] = choice
    elif isinstance(choice, dict) and choice.get("type") == "function":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif choice is not None:
        view.untranslatable.append(("tool_choice", f"A tool_choice of type '{choice.get('type')}'"))
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") in _FORMATS:
        chat["response_format"] = _FORMATS[fmt["type"]](fmt)
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    for key in ("conversation", "prompt"):  # state and templates kept at the provider
        if body.get(key) is not None:
            view.untranslatable.append((key, f"'{key}'"))
    effort = (body.get("reasoning") or {}).get("effort")
    if effort:
        chat["reasoning_effort"] = effort
    for key in _COPIED:
        if body.get(key) is not None:
            chat[key] = body[key]
    return view


# --- answers: chat → Response, Response → chat ---------------------------------------------------


def usage_from_chat(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if not usage:
        return None
    prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": usage.get("total_tokens") or prompt + completion}


def usage_to_chat(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if not usage:
        return None
    prompt, completion = usage.get("input_tokens") or 0, usage.get("output_tokens") or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": usage.get("total_tokens") or prompt + completion}


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [text_part(text)]}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(item_id: str, call_id: str, name: str, arguments: str,
              status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id,
            "name": name, "arguments": arguments}


# finish_reason → (status, incomplete_details)
_ENDINGS: dict[str, tuple[str, dict[str, str] | None]] = {
    "length": ("incomplete", {"reason": "max_output_tokens"}),
    "content_filter": ("incomplete", {"reason": "content_filter"}),
}


def envelope(body: dict[str, Any], response_id: str, created_at: float, model: str,
             ) -> dict[str, Any]:
    """A Response object for `body` with no output yet (status in_progress)."""
    return {
        "id": response_id, "object": "response", "created_at": int(created_at),
        "status": "in_progress", "error": None, "incomplete_details": None,
        "instructions": body.get("instructions"), "max_output_tokens":
        body.get("max_output_tokens"), "model": model, "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "store": body.get("store", True), "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0), "truncation": body.get("truncation", "disabled"),
        "usage": None, "user": body.get("user"), "metadata": body.get("metadata") or {},
    }


def complete(resp: dict[str, Any], output: list[dict[str, Any]], finish: str | None,
             usage: dict[str, Any] | None) -> dict[str, Any]:
    """`resp` (an envelope) finished with `output`, the chat finish reason and usage."""
    status, incomplete = _ENDINGS.get(finish or "", ("completed", None))
    done = {**resp, "status": status, "incomplete_details": incomplete, "output": output,
            "usage": usage_from_chat(usage)}
    if status == "completed":
        done["completed_at"] = int(time.time())
    return done


def chat_to_response(chat: dict[str, Any], resp: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion rendered into the envelope `resp`."""
    choice = (chat.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    calls = msg.get("tool_calls") or []
    if msg.get("content") or msg.get("refusal") or not calls:
        item = message_item(new_id("msg"), msg.get("content") or "")
        if msg.get("refusal"):
            item["content"] = [{"type": "refusal", "refusal": msg["refusal"]}]
        output.append(item)
    for call in calls:
        fn = call.get("function") or {}
        output.append(call_item(new_id("fc"), call.get("id") or new_id("call"),
                                fn.get("name") or "", fn.get("arguments") or ""))
    return complete(resp, output, choice.get("finish_reason"), chat.get("usage"))


def response_to_chat(resp: dict[str, Any]) -> dict[str, Any]:
    """A Response object as the chat.completion the loop records and compares."""
    texts: list[str] = []
    refusals: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in resp.get("output") or ():
        if item.get("type") == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text":
                    texts.append(part.get("text") or "")
                elif part.get("type") == "refusal":
                    refusals.append(part.get("refusal") or "")
        elif item.get("type") == "function_call":
            calls.append({"id": item.get("call_id"), "type": "function", "function": {
                "name": item.get("name"), "arguments": item.get("arguments") or ""}})
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if refusals:
        msg["refusal"] = "".join(refusals)
    if calls:
        msg["tool_calls"] = calls
    reason = str((resp.get("incomplete_details") or {}).get("reason"))
    finish = "tool_calls" if calls else {"max_output_tokens": "length",
                                         "content_filter": "content_filter"}.get(reason, "stop")
    out = {"id": resp.get("id"), "object": "chat.completion",
           "created": int(resp.get("created_at") or 0), "model": resp.get("model"),
           "choices": [{"index": 0, "message": msg, "finish_reason": finish, "logprobs": None}]}
    usage = usage_to_chat(resp.get("usage"))
    if usage is not None:
        out["usage"] = usage
    return out
