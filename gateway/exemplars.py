"""Worked examples: a student asked with its task's nearest training exchanges first.

A small pretrained model copies well from what is in front of it and learns slowly from the
few steps a CPU budget holds. So a pretrained student of a task whose answers are code (SQL)
is trained and asked with the `k` training exchanges nearest to the request as earlier turns
of the conversation (the last user turn and the teacher's answer of each, nearest last, just
before the request's last user turn): it learns to adapt a worked answer rather than to
recall every query shape from its weights (measured on public text-to-SQL: docs/students.md).

Nearest is TF-IDF cosine over the words and word pairs of the last user turn, through an
inverted index: pure Python, no model, milliseconds over a few thousand exchanges, so the
gateway asks a student this way without torch. The bank holds the training exchanges as the
student learnt from them (scrubbed, before copy slots: the slots are applied to the whole
conversation, worked examples included, at training and at serving alike). A training
example is never shown itself, nor another exchange with the same text.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

# Beside slimgate.json in a student's directory: the bank can hold thousands of exchanges,
# which the metadata that every reader of a student parses (the registry, warm starts, the
# gateway when it builds the student's backend) should not carry. slimgate.json says `k`.
FILE = "exemplars.json"

_WORD = re.compile(r"\w+")
# Terms in more than this share of a bank's exchanges ("the", "question", a column every
# table names) do not rank them: scored, they took 87 ms a request over 2,500 WikiSQL
# questions with their tables' columns and 188 ms over 5,000; left out, 7-8 ms
# (`bench/exemplar_lookup.py`). A request that shares too few rarer terms with the bank to
# fill its `k` is ranked on every term, so it is shown `k` examples all the same.
COMMON_SHARE = 0.1


def last_user_text(messages: Sequence[Any]) -> str | None:
    """The text of the last user turn (its text parts joined), or None without one."""
    for m in reversed(messages):
        if not isinstance(m, dict) or m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            parts = [p.get("text") for p in content
                     if isinstance(p, dict) and p.get("type") == "text"]
            return "\n".join(p for p in parts if isinstance(p, str)) or None
        return None
    return None


def _terms(text: str) -> Counter[str]:
    words = [w.casefold() for w in _WORD.findall(text)]
    return Counter(words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)])


class Exemplars:
    """A task's worked examples (user text, answer text) and how many a request is given."""

    def __init__(self, shots: Iterable[tuple[str, str]], k: int) -> None:
        self.shots = [(str(q), str(a)) for q, a in shots]
        self.k = k
        bags = [_terms(q) for q, _ in self.shots]
        df = Counter(t for bag in bags for t in bag)
        n = len(bags)
        self._unseen = math.log(1 + n) + 1  # a term no exchange has: the rarest weight
        self._idf = {t: math.log((1 + n) / (1 + c)) + 1 for t, c in df.items()}
        self._postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self._common = {t for t, c in df.items() if c > max(COMMON_SHARE * n, 1)}
        self._vectors = [self._vector(bag) for bag in bags]
        for i, vector in enumerate(self._vectors):
            for term, weight in vector.items():
                if term not in self._common:
                    self._postings[term].append((i, weight))

    def __len__(self) -> int:
        return len(self.shots)

    def _vector(self, bag: Counter[str]) -> dict[str, float]:
        v = {t: c * self._idf.get(t, self._unseen) for t, c in bag.items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {t: x / norm for t, x in v.items()}

    def nearest(self, text: str, k: int | None = None) -> list[int]:
        """Indices of the `k` exchanges nearest `text`, nearest first, never one whose user
        text is `text` itself; ties go to the earlier exchange (the order is stable)."""
        k = self.k if k is None else k
        query = self._vector(_terms(text))
        scores: dict[int, float] = defaultdict(float)
        for term, weight in query.items():
            for i, w in self._postings.get(term, ()):
                scores[i] += weight * w
        if sum(self.shots[i][0] != text for i in scores) < k:
            scores = defaultdict(float, {i: sum(w * v.get(t, 0.0) for t, w in query.items())
                                         for i, v in enumerate(self._vectors)})
        ranked = sorted((i for i, s in scores.items() if s > 0 and self.shots[i][0] != text),
                        key=lambda i: (-scores[i], i))
        return ranked[:k]

    def add_to(self, request: dict[str, Any]) -> dict[str, Any]:
        """The request with its nearest worked examples as user/assistant turns before its
        last user turn (a copy; the request itself is unchanged). A request without a user
        turn in text, or a bank with nothing near it, is returned as it is."""
        messages = request.get("messages")
        if not isinstance(messages, list) or not self.shots or self.k <= 0:
            return request
        text = last_user_text(messages)
        if text is None:
            return request
        picked = self.nearest(text)
        if not picked:
            return request
        at = max(i for i, m in enumerate(messages)
                 if isinstance(m, dict) and m.get("role") == "user")
        turns: list[dict[str, Any]] = []
        for i in reversed(picked):  # nearest last, next to the question
            question, answer = self.shots[i]
            turns += [{"role": "user", "content": question},
                      {"role": "assistant", "content": answer}]
        out = copy.copy(request)
        out["messages"] = [*messages[:at], *turns, *messages[at:]]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"k": self.k, "shots": [list(s) for s in self.shots]}

    def save(self, directory: Path) -> None:
        (directory / FILE).write_text(json.dumps(self.as_dict(), ensure_ascii=False),
                                      encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> Exemplars | None:
        """The bank saved in a student's directory (None: none there, or malformed)."""
        try:
            return cls.from_dict(json.loads((directory / FILE).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None

    @classmethod
    def from_dict(cls, data: Any) -> Exemplars | None:
        """From `as_dict`'s form (None where it is malformed or empty)."""
        if not isinstance(data, dict):
            return None
        k, shots = data.get("k"), data.get("shots")
        if not isinstance(k, int) or k <= 0 or not isinstance(shots, list):
            return None
        pairs = [(s[0], s[1]) for s in shots if isinstance(s, list) and len(s) == 2
                 and isinstance(s[0], str) and isinstance(s[1], str)]
        return cls(pairs, k) if pairs else None
