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
# A "label" task's answers must be a label set for it to be remembered: at least this share
# of its requests answered with an answer some other request got too. A judgement, checked
# on the loop benchmark's public data (bench/loop_workload.pools, first 20-300 requests):
# SNIPS intents (7 labels) are at 1.0 from 20 requests; FreshQA's short factual answers
# (each question its own answer; discovery calls them "label" for their length) at
# 0.00-0.10. A uniform 77-class set passes 0.5 at ~55 requests (computed, not measured).
LABEL_SET_MIN_SHARED = 0.5
LABEL_SET_MIN_REQUESTS = 20  # fewer remembered requests say nothing either way: wait


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


def forms_label_set(answer_counts: list[int]) -> bool:
    """Whether short answers are a label set: `answer_counts[i]` is how many remembered
    requests got the i-th distinct answer. Answers each request has alone are facts the
    request does not hold (free text in a label's length), never remembered."""
    total = sum(answer_counts)
    if total < LABEL_SET_MIN_REQUESTS:
        return False
    shared = sum(c for c in answer_counts if c > 1)
    return shared / total >= LABEL_SET_MIN_SHARED
