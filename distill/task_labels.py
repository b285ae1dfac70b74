"""Readable task labels: the tool names, the json_schema name, else top TF-IDF terms.

Labels are for people (dashboards, reports, policy selection by label); ids stay the key.
"""

from __future__ import annotations

from collections import Counter

from distill.task_split import Candidate, sample
from gateway.fingerprint import message_text, system_text
from gateway.store.catalog import TaskRecord


def task_labels(cands: list[Candidate]) -> list[str]:
    """Readable names: the tool names, the json_schema name, else top TF-IDF terms."""
    labels: list[str | None] = []
    docs: list[str] = []
    for c in cands:
        req = c.rows[0]["request"]
        tools, fmt = c.signature.split("|", 1)
        js = (req.get("response_format") or {}).get("json_schema") or {}
        if c.explicit:
            labels.append(c.explicit)
        elif tools:
            labels.append("tools: " + tools.replace(",", ", "))
        elif fmt.startswith("json_schema") and js.get("name"):
            labels.append(f"json: {js['name']}")
        else:
            labels.append(None)
        picked = [c.rows[i]["request"] for i in sample(len(c.rows), 200)]
        docs.append(system_text(req) + "\n" + "\n".join(
            message_text(m) for r in picked for m in r["messages"]
            if isinstance(m, dict) and m.get("role") == "user"))
    if any(lab is None for lab in labels):
        labels = [lab or top for lab, top in zip(labels, _top_terms(docs), strict=True)]
    return [lab or "chat" for lab in labels]


def dedupe_labels(tasks: list[TaskRecord]) -> None:
    """Suffix repeated labels with (2), (3)... so every task reads differently."""
    seen: Counter[str] = Counter()
    for t in tasks:
        seen[t.label] += 1
        if seen[t.label] > 1:
            t.label = f"{t.label} ({seen[t.label]})"


def _top_terms(docs: list[str], n: int = 3) -> list[str]:
    """The `n` highest TF-IDF terms of each document against the others, comma-joined."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(stop_words="english", sublinear_tf=True,
                            token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
    try:
        weights = tfidf.fit_transform(docs).toarray()
    except ValueError:  # nothing but stop words anywhere
        return ["chat"] * len(docs)
    terms = tfidf.get_feature_names_out()
    return [", ".join(terms[j] for j in row.argsort()[::-1][:n] if row[j] > 0) or "chat"
            for row in weights]
