"""What the answer memory may serve: which tasks, which requests, which recorded answers.

The answer memory serves the teacher's own answer again to a request it has seen exactly
before (gateway/answer_memory.py), with stages and a gate of its own (distill/memory.py).
These rules are plain functions so they can be tested and read in one place.
"""

from __future__ import annotations

from typing import Any

# Answers the memory may hold: structured ones, whose equality the gate checks exactly. Free
# text is never remembered: a remembered "who is the current ..." answer goes stale, and two
# wordings of one reply are not the same answer to compare exactly.
MEMORY_KINDS = ("label", "json", "tool_call")

# Request fields that change what the teacher would answer, beyond the request key's
# messages, tools and response format: part of the memory key.
ANSWER_FIELDS = ("tool_choice", "parallel_tool_calls", "max_tokens", "max_completion_tokens",
                 "stop", "reasoning_effort", "modalities", "audio", "prediction")

MAX_ENTRIES_PER_TASK = 50_000  # a cap on memory per task (~a few MB); older keys stay out


def request_servable(body: dict[str, Any]) -> bool:
    """Whether a request can be answered from memory at all: one choice, no log
    probabilities (a stored answer has none), nothing but chat messages."""
    n = body.get("n")
    if n not in (None, 1):
        return False
    if body.get("logprobs") or body.get("top_logprobs"):
        return False
    return isinstance(body.get("messages"), list)


def answer_memorable(kind: str, finish_reason: str | None, message: dict[str, Any]) -> bool:
    """Whether a recorded teacher answer may be remembered: a structured task's complete
    answer (not cut by a length limit, not a refusal), with content or tool calls."""
    if kind not in MEMORY_KINDS:
        return False
    if finish_reason not in ("stop", "tool_calls", None):
        return False
    if message.get("refusal"):
        return False
    return bool(message.get("tool_calls")) or bool(message.get("content"))
