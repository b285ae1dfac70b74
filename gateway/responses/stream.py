"""Responses API server-sent events: typed, numbered, in OpenAI's documented order.

`ChatToEvents` turns a chat-completions chunk stream (a translate-mode upstream, or a
student's checked answer replayed as chunks) into the events a Responses client expects:

    response.created, response.in_progress,
    per output item: response.output_item.added,
        message:       response.content_part.added, response.output_text.delta…,
                       response.output_text.done, response.content_part.done
        function_call: response.function_call_arguments.delta…, …arguments.done
    response.output_item.done, and finally response.completed (or response.incomplete).

Each event carries `sequence_number`, counted from 0.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.responses.translate import call_item, complete, message_item, new_id, text_part


def sse(event: dict[str, Any]) -> bytes:
    """One event on the wire, named like OpenAI names it (`event:` then `data:`)."""
    return b"event: " + str(event.get("type", "message")).encode() + b"\ndata: " + \
        orjson.dumps(event) + b"\n\n"


class ChatToEvents:
    """Chat chunks in, Responses events out; `response` is the final object at the end."""

    def __init__(self, envelope: dict[str, Any]) -> None:
        self.response = envelope
        self._seq = 0
        self._output: list[dict[str, Any]] = []  # items in output order, built as they stream
        self._open: int | None = None  # output index of the item still streaming
        self._message: int | None = None  # output index of the assistant message item
        self._calls: dict[int, int] = {}  # chat tool-call index → output index
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        ev = {"type": kind, **fields, "sequence_number": self._seq}
        self._seq += 1
        return ev

    def start(self) -> list[dict[str, Any]]:
        return [self._event("response.created", response=self.response),
                self._event("response.in_progress", response=self.response)]

    def _add(self, item: dict[str, Any], out: list[dict[str, Any]]) -> int:
        if self._open is not None:
            out.extend(self._close(self._open))
        index = len(self._output)
        self._output.append(item)
        self._open = index
        out.append(self._event("response.output_item.added", output_index=index,
                               item={**item, "content": []} if "content" in item else dict(item)))
        return index

    def _close(self, index: int) -> list[dict[str, Any]]:
        item = self._output[index]
        self._open = None
        item["status"] = "completed"
        out = []
        if item["type"] == "message":
            text = item["content"][0]["text"]
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            out.append(self._event("response.output_text.done", **where, text=text, logprobs=[]))
            out.append(self._event("response.content_part.done", **where, part=text_part(text)))
        else:
            out.append(self._event("response.function_call_arguments.done", item_id=item["id"],
                                   output_index=index, name=item["name"],
                                   arguments=item["arguments"]))
        out.append(self._event("response.output_item.done", output_index=index, item=item))
        return out

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # the Responses API has one answer per request
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self._text(delta["content"], out)
            for call in delta.get("tool_calls") or ():
                self._call(call, out)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return out

    def _text(self, text: str, out: list[dict[str, Any]]) -> None:
        if self._message is None:
            self._message = self._add(message_item(new_id("msg"), "", "in_progress"), out)
            item = self._output[self._message]
            out.append(self._event("response.content_part.added", item_id=item["id"],
                                   output_index=self._message, content_index=0,
                                   part=text_part("")))
        item = self._output[self._message]
        item["content"][0]["text"] += text
        # A message continued after a tool call began is folded in without events: chat
        # streams do not interleave items in practice, and response.completed has it whole.
        if self._open == self._message:
            out.append(self._event("response.output_text.delta", item_id=item["id"],
                                   output_index=self._message, content_index=0, delta=text,
                                   logprobs=[]))

    def _call(self, call: dict[str, Any], out: list[dict[str, Any]]) -> None:
        k = call.get("index", len(self._calls))
        fn = call.get("function") or {}
        if k not in self._calls:
            item = call_item(new_id("fc"), call.get("id") or new_id("call"),
                             fn.get("name") or "", "", "in_progress")
            self._calls[k] = self._add(item, out)
        index = self._calls[k]
        item = self._output[index]
        if fn.get("arguments"):
            item["arguments"] += fn["arguments"]
            if self._open == index:
                out.append(self._event("response.function_call_arguments.delta",
                                       item_id=item["id"], output_index=index,
                                       delta=fn["arguments"]))

    def finish(self) -> list[dict[str, Any]]:
        out = self._close(self._open) if self._open is not None else []
        if not self._output:  # an empty answer is still one (empty) message
            out.extend(self._close(self._add(message_item(new_id("msg"), ""), out)))
        self.response = complete(self.response, self._output, self._finish, self._usage)
        kind = "response.completed" if self.response["status"] == "completed" \
            else "response.incomplete"
        out.append(self._event(kind, response=self.response))
        return out

    def error(self, code: str | None, message: str) -> dict[str, Any]:
        return self._event("error", code=code, message=message, param=None)
