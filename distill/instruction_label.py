"""A task's name from what it is asked: the first clause of its instruction, shortened.

"You triage incoming support tickets. Answer with one label: ..." reads as "triage incoming
support tickets"; "Classify this support ticket as billing, technical, account, shipping or
other." as "Classify this support ticket". Variable parts (dates, numbers, quotes, e-mails)
end a clause, so no instance value reaches a label. Pure string work, no models.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gateway.fingerprint import mask_variable

MAX_WORDS = 8  # a label reads at a glance: about a dashboard column's width
MAX_CHARS = 60
# Words that say nothing about which task it is: a prompt made of these alone ("You are a
# helpful assistant.", "Hi there!") is no instruction, and the label looks further.
GENERIC = frozenset({
    "a", "an", "the", "you", "your", "are", "is", "be", "i", "we", "am", "as", "helpful",
    "harmless", "honest", "friendly", "useful", "smart", "expert", "assistant", "assistants",
    "ai", "language", "model", "models", "llm", "bot", "chatbot", "agent", "system", "large",
    "helper", "please", "always", "who", "that", "which", "can", "will", "do", "help", "helps",
    "user", "users", "hi", "hello", "hey", "there", "thanks", "thank", "dear", "good",
    "morning", "afternoon", "evening", "team", "all", "everyone",
})
STOP = frozenset({
    "a", "an", "the", "of", "for", "to", "and", "or", "with", "in", "on", "by", "at", "as",
    "from", "into", "that", "which", "who", "whose", "this", "these", "those", "its", "it",
    "your", "our", "their", "be", "is", "are", "was", "were", "so", "than", "then", "about",
    "over", "via", "using",
})
# Where a long clause may be cut: before these words (a relative clause, a purpose, a manner).
CUT_BEFORE = frozenset({
    "and", "that", "which", "who", "whose", "as", "with", "in", "for", "by", "from", "using",
    "so", "to", "into", "according", "based", "while", "when", "where",
})
RELATIVE = frozenset({"that", "which", "who", "whose"})
_OPENERS = re.compile(
    r"^(?:(?:please|now|ok|okay|hi|hello)[,!]?\s+)?"
    r"(?:you\s+are\s+(?:now\s+)?(?:an?|the)?\s*|you\s+will\s+|you\s+|your\s+(?:task|job|role)"
    r"\s+is\s+(?:to\s+)?|i\s+want\s+you\s+to\s+|act\s+as\s+(?:an?|the)?\s*)", re.IGNORECASE)
_ARTICLE = re.compile(r"^(?:an?|the)\s+", re.IGNORECASE)
_MARKUP = re.compile(r"^\s*(?:#+|[*_>\-•]+|\d+[.)])\s*|\*\*|__|`")
_TAG = re.compile(r"</?[A-Za-z_][\w-]*>")  # <instructions>, and the mask's <num>, <date>...
_PAREN = re.compile(r"\s*[(\[][^()\[\]]*[)\]]")
# An enumeration of three or more items ("billing, technical, account or other"), with the
# word that introduces it: a label names the task, not its answer set.
_LIST = re.compile(r"(?:\s+(?:as|into|to|among|from|like|either|one\s+of)\s*:?|\s*:)?\s+"
                   r"[\w/-]+(?:\s*,\s*[\w/-]+)+,?\s+(?:or|and)\s+[\w/-]+", re.IGNORECASE)
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+|(?<=:)\s+")
_CLAUSE_END = re.compile(r"[,;:!?]|\.(?=\s|$)| - | — ")


def content_words(text: str) -> list[str]:
    """The words of `text` that say which task it is (not generic, not joining words)."""
    return [w for w in re.findall(r"[a-z][a-z'-]*", text.lower())
            if w not in GENERIC and w not in STOP]


def _tidy(words: list[str]) -> list[str]:
    while words and words[-1].lower().strip("'") in STOP:
        words = words[:-1]
    return words


def _shorten(clause: str) -> str:
    """At most MAX_WORDS words, cut before a joining word where there is one."""
    words = clause.split()
    if len(words) > MAX_WORDS:
        cuts = [i for i, w in enumerate(words[:MAX_WORDS + 1])
                if i >= 2 and w.lower() in CUT_BEFORE]
        relative = [i for i in cuts if words[i].lower() in RELATIVE]  # the head noun names it
        words = words[:(relative or cuts)[0 if relative else -1]] if cuts else words[:MAX_WORDS]
    words = _tidy(words)
    text = " ".join(words)
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS].rsplit(" ", 1)[0]
    return text


def _clauses(sentence: str) -> list[str]:
    """The sentence's clauses in order, each cut at a variable part or a clause mark."""
    masked = mask_variable(_MARKUP.sub("", sentence))
    masked = _PAREN.sub("", masked)
    pieces = _TAG.split(masked)
    out: list[str] = []
    for piece in pieces:
        out += [c.strip(" \"'“”*") for c in _CLAUSE_END.split(piece)]
    return [c for c in out if c]


def _phrase(clause: str) -> str:
    clause = _OPENERS.sub("", clause, count=1)
    clause = _ARTICLE.sub("", clause, count=1)
    return _shorten(clause)


def _named(clause: str) -> str | None:
    """The clause as a name (first letter capitalised), or None when it says too little."""
    phrase = _phrase(clause)
    return phrase[:1].upper() + phrase[1:] if len(content_words(phrase)) >= 2 else None


def _first_name(sentence: str) -> str | None:
    return next((n for c in _clauses(sentence) if (n := _named(c)) is not None), None)


def instruction_label(text: str) -> str | None:
    """The first clause of `text` that names a task, shortened; None when none does.

    Sentences saying next to nothing ("You are a helpful assistant.", "Today is <date>.",
    a bare `<instructions>` tag) are passed over; the first one that says more decides.
    """
    for sentence in _SENTENCES.split(text[:4000]):
        if len(content_words(_TAG.sub(" ", mask_variable(sentence)))) < 2:
            continue
        without = _LIST.sub("", sentence)
        name = _first_name(without) if without != sentence else None
        if name is None:  # the list kept whole: its commas end no clause
            kept = _LIST.sub(lambda m: m.group(0).replace(",", "\x00"), sentence)
            name = _first_name(kept)
        return name.replace("\x00", ",") if name else None
    return None


def common_label(texts: Sequence[str]) -> str | None:
    """One label for several wordings of one instruction (most frequent first): the first
    one's label, keeping only the words every other wording's label has too ("customer-care
    writer for Acme Outdoor" and "... for Blue Harbor Coffee" read "customer-care writer")."""
    labels = [lab for lab in (instruction_label(t) for t in texts) if lab]
    if not labels:
        return None
    opening = labels[0].lower().split()[:2]
    if any(lab.lower().split()[:2] != opening for lab in labels[1:]):
        return labels[0]  # worded differently, not one wording with a name changed
    first, others = labels[0], [set(lab.lower().split()) for lab in labels[1:]]
    kept = [w for w in first.split() if all(w.lower() in o for o in others)]
    kept = _tidy(kept)
    if len(kept) >= 2 and len(content_words(" ".join(kept))) >= 2:
        text = " ".join(kept)
        return text[:1].upper() + text[1:]
    return first
