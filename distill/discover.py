"""Step S3: discover the task types in recorded traffic.

An explicit task tag always wins. Untagged requests are grouped by fingerprint (masked system
prompt, tools, response format); a group whose user content falls into clearly separate
clusters is split with sentence embeddings and k-means (k chosen by silhouette), and
candidates that differ only in wording of the prompt merge. Ids are stable across runs.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.fingerprint import content_text, fingerprint, message_text, signature, system_text
from gateway.store.catalog import TaskRecord
from gateway.task_ids import is_task_id
from policies.kinds import output_kind, task_kind

DISCOVERED_ID = re.compile(r"t-[0-9a-f]{10}")  # ids this module makes; never a client's tag
# Split a fingerprint group only when its clusters are clearly apart. Measured on the
# workload's content embeddings: one task alone scores 0.13-0.35 (a 7-intent router is the
# highest), two or three tasks sharing one generic prompt 0.49-0.56.
MIN_SILHOUETTE = 0.4
REJOIN_COSINE = 0.8  # split parts this close (content centroids) are topics of one task
MERGE_COSINE = 0.95  # candidates with the same tools/format this close are one task...
MERGE_PROMPT_SIMILARITY = 0.9  # ...or with prompts this alike word for word (difflib ratio)
MERGE_CONTENT_COSINE = 0.9  # ...and user content this close
MAX_K = 8
SAMPLE = 1000  # rows per group embedded to decide a split and a centroid


@dataclass
class Discovery:
    tasks: list[TaskRecord]
    assignments: list[tuple[str, int]]  # (task id, seq) for rows whose task changes
    report: dict[str, Any]


@dataclass
class _Candidate:
    rows: list[dict[str, Any]]
    parts: list[str]  # "fingerprint/cluster" for each merged part: the id's source
    explicit: str | None = None
    centroid: Any = None  # unit numpy vector [system | content] / sqrt(2), with an embedder
    signature: str = ""
    fingerprints: set[str] = field(default_factory=set)
    systems: set[str] = field(default_factory=set)  # masked system prompts


def explicit_tag(row: dict[str, Any], discovered: set[str]) -> str | None:
    """The client's own task tag: `metadata.task`, else a task column that is not ours."""
    meta = row["request"].get("metadata")
    tag = meta.get("task") if isinstance(meta, dict) else None
    if is_task_id(tag):
        return tag
    tag = row.get("task")
    if is_task_id(tag) and tag not in discovered \
            and not DISCOVERED_ID.fullmatch(tag):
        return tag
    return None


def _sample(n: int, size: int) -> list[int]:
    """Evenly spread indices, deterministic, so re-discovery sees the same sample."""
    if n <= size:
        return list(range(n))
    return [round(i * (n - 1) / (size - 1)) for i in range(size)]


def split_by_content(vecs: Any, min_part: int, scale: float = 1.0) -> tuple[Any, int, float]:
    """(labels or None, k, silhouette): the best k-means split of unit vectors, if clearly good.

    k runs over 2..MAX_K; a split counts only when every part holds at least `min_part` rows
    (sample sizes times `scale`) and the mean silhouette (cosine) reaches MIN_SILHOUETTE.
    Parts whose centroids are within REJOIN_COSINE are joined again (sub-topics of one task).
    """
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    best: tuple[Any, int, float] = (None, 1, -1.0)
    for k in range(2, min(MAX_K, int(len(vecs) * scale) // max(min_part, 1)) + 1):
        labels = KMeans(n_clusters=k, n_init=4, random_state=0).fit_predict(vecs)
        if np.bincount(labels, minlength=k).min() * scale < min_part:
            continue
        score = float(silhouette_score(vecs, labels, metric="cosine"))
        if score > best[2]:
            best = (labels, k, score)
    labels, k, score = best
    if labels is None or score < MIN_SILHOUETTE:
        return None, k, score
    labels = _rejoin(vecs, labels, k)
    k = int(labels.max()) + 1
    return (labels if k > 1 else None), k, score


def _rejoin(vecs: Any, labels: Any, k: int) -> Any:
    """Labels renumbered 0..k'-1 after joining parts whose centroids are REJOIN_COSINE close."""
    import numpy as np

    from gateway.embed import normalise

    centres = normalise(np.stack([vecs[labels == j].mean(axis=0) for j in range(k)]))
    sims = centres @ centres.T
    group = list(range(k))
    for i in range(k):
        for j in range(i + 1, k):
            if sims[i, j] >= REJOIN_COSINE:
                old, new = group[j], group[i]
                group = [new if g == old else g for g in group]
    renumber = {g: n for n, g in enumerate(dict.fromkeys(group))}
    return np.array([renumber[group[lab]] for lab in labels])


def _tokens(text_len: int) -> int:
    return text_len // 4  # estimate: ~4 characters per token


def _prompt_chars(request: dict[str, Any]) -> int:
    chars = sum(len(message_text(m)) for m in request.get("messages") or [] if isinstance(m, dict))
    return chars + (len(orjson.dumps(request["tools"])) if request.get("tools") else 0)


def _answer(row: dict[str, Any]) -> dict[str, Any] | None:
    choices = (row.get("response") or {}).get("choices") or []
    msg = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    return msg if isinstance(msg, dict) else None


def _answer_chars(msg: dict[str, Any]) -> int:
    calls = msg.get("tool_calls") or []
    return len(msg.get("content") or "") + sum(
        len(str((c.get("function") or {}).get("arguments") or "")) for c in calls)


def _quantile(values: list[int], q: float) -> int:
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _info(c: _Candidate) -> dict[str, Any]:
    answers = [(a, r["request"]) for r in c.rows if (a := _answer(r)) is not None]
    kinds = Counter(output_kind(a, req) for a, req in answers)
    prompt = [_tokens(_prompt_chars(r["request"])) for r in c.rows]
    info: dict[str, Any] = {
        "fingerprints": sorted(c.fingerprints), "signature": c.signature, "count": len(c.rows),
        "prompt_tokens_p50": _quantile(prompt, 0.5), "prompt_tokens_p99": _quantile(prompt, 0.99),
        "answer_tokens_p99": _quantile([_tokens(_answer_chars(a)) for a, _ in answers], 0.99),
        "kinds": dict(kinds), "tokens_estimate": "chars/4",
    }
    if c.centroid is not None:
        info["centroid"] = [round(float(x), 5) for x in c.centroid]
    return info


def _task_id(c: _Candidate) -> str:
    return "t-" + hashlib.sha256("|".join(sorted(c.parts)).encode()).hexdigest()[:10]


def _labels(cands: list[_Candidate]) -> list[str]:
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
        sample = [c.rows[i]["request"] for i in _sample(len(c.rows), 200)]
        docs.append(system_text(req) + "\n" + "\n".join(
            message_text(m) for r in sample for m in r["messages"]
            if isinstance(m, dict) and m.get("role") == "user"))
    if any(lab is None for lab in labels):
        labels = [lab or top for lab, top in zip(labels, _top_terms(docs), strict=True)]
    return [lab or "chat" for lab in labels]


def _dedupe_labels(tasks: list[TaskRecord]) -> None:
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


def _mean_unit(vecs: Any) -> Any:
    from gateway.embed import normalise

    return normalise(vecs.mean(axis=0))


def _group_candidates(
    fp: str, group: list[dict[str, Any]], embedder: Any, min_examples: int,
    cache: dict[str, Any], report: dict[str, Any],
) -> list[_Candidate]:
    """One fingerprint group as one candidate, or split by user content into several."""
    import numpy as np

    from gateway.embed import nearest, normalise, request_vectors

    sig, system = signature(group[0]["request"]), system_text(group[0]["request"])
    whole = _Candidate(group, [f"{fp}/0"], signature=sig, fingerprints={fp}, systems={system})
    if embedder is None:
        return [whole]
    idx = _sample(len(group), SAMPLE)
    reqs = [group[i]["request"] for i in idx]
    content = embedder.encode([content_text(r) for r in reqs])
    labels, k, score = None, 1, -1.0
    if len(group) >= 2 * min_examples:
        labels, k, score = split_by_content(content, min_examples, len(group) / len(idx))
    report["groups"].append({"fingerprint": fp, "rows": len(group), "best_k": k,
                             "silhouette": round(score, 3), "split": labels is not None})
    if labels is None:
        whole.centroid = _mean_unit(request_vectors(embedder, reqs, content_vecs=content,
                                                    system_cache=cache))
        return [whole]
    row_labels = np.full(len(group), -1)
    row_labels[idx] = labels
    rest = [i for i in range(len(group)) if row_labels[i] < 0]
    if rest:  # rows outside the sample go to the nearest cluster centre
        centres = normalise(np.stack([content[labels == j].mean(axis=0) for j in range(k)]))
        vecs = embedder.encode([content_text(group[i]["request"]) for i in rest])
        row_labels[rest] = nearest(vecs, centres)[0]
    # number clusters by their first row, so an index means the same cluster next time
    order = sorted(range(k), key=lambda j: int(np.argmax(row_labels == j)))
    out = []
    for rank, j in enumerate(order):
        c = _Candidate([g for g, lab in zip(group, row_labels, strict=True) if lab == j],
                       [f"{fp}/{rank}"], signature=sig, fingerprints={fp}, systems={system})
        mine = [r for r, lab in zip(reqs, labels, strict=True) if lab == j]
        c.centroid = _mean_unit(request_vectors(embedder, mine, content_vecs=content[labels == j],
                                                system_cache=cache))
        out.append(c)
    return out


def _prompts_alike(a: str, b: str) -> bool:
    """Whether two masked prompts are MERGE_PROMPT_SIMILARITY alike, word for word."""
    m = difflib.SequenceMatcher(None, a.split(), b.split(), autojunk=False)
    limit = MERGE_PROMPT_SIMILARITY
    return m.real_quick_ratio() >= limit and m.quick_ratio() >= limit and m.ratio() >= limit


def _alike(a: _Candidate, b: _Candidate) -> bool:
    """Near-identical candidates. MiniLM scores prompts that differ only in a brand name at
    0.6-0.75 cosine, so a templated prompt is also recognised by its words."""
    if float(a.centroid @ b.centroid) >= MERGE_COSINE:
        return True
    from gateway.embed import normalise

    half = len(a.centroid) // 2  # centroids are [system | content] / sqrt(2)
    content_cos = float(normalise(a.centroid[half:]) @ normalise(b.centroid[half:]))
    return content_cos >= MERGE_CONTENT_COSINE and any(
        _prompts_alike(x, y) for x in a.systems for y in b.systems)


def _merge(cands: list[_Candidate], report: dict[str, Any]) -> list[_Candidate]:
    """Join candidates with the same tools and format whose centroids nearly coincide."""
    from gateway.embed import normalise

    parent = list(range(len(cands)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(cands):
        for j in range(i + 1, len(cands)):
            b = cands[j]
            if a.explicit or b.explicit or a.signature != b.signature or a.centroid is None \
                    or b.centroid is None:
                continue
            if _alike(a, b):
                parent[root(j)] = root(i)
    joined: dict[int, list[_Candidate]] = defaultdict(list)
    for i, c in enumerate(cands):
        joined[root(i)].append(c)
    out = []
    for members in joined.values():
        if len(members) == 1:
            out.append(members[0])
            continue
        report["merged"].append(sorted(p for m in members for p in m.parts))
        total = sum(len(m.rows) for m in members)
        centroid = normalise(sum(m.centroid * (len(m.rows) / total) for m in members))
        rows = sorted((r for m in members for r in m.rows), key=lambda r: r.get("seq") or 0)
        out.append(_Candidate(
            rows, [p for m in members for p in m.parts], None, centroid, members[0].signature,
            set().union(*(m.fingerprints for m in members)),
            set().union(*(m.systems for m in members))))
    return out


def _reuse_ids(cands: list[_Candidate], existing: list[TaskRecord]) -> dict[int, TaskRecord]:
    """Existing discovered tasks matched to candidates: a shared fingerprint first (nearest
    centroid among several), else the same tools/format and a centroid within MERGE_COSINE."""
    import numpy as np

    pool = [t for t in existing if not t.explicit]
    pairs: list[tuple[float, int, int]] = []
    for ci, c in enumerate(cands):
        if c.explicit:
            continue
        for ti, t in enumerate(pool):
            fps = set(t.info.get("fingerprints") or [])
            cen = t.info.get("centroid")
            cos = None
            if c.centroid is not None and cen and len(cen) == len(c.centroid):
                cos = float(c.centroid @ np.asarray(cen, dtype=np.float32))
            if c.fingerprints & fps:
                overlap = len(c.fingerprints & fps) / len(c.fingerprints | fps)
                pairs.append((1.0 + (cos if cos is not None else overlap), ci, ti))
            elif cos is not None and cos >= MERGE_COSINE and t.info.get("signature") == c.signature:
                pairs.append((cos, ci, ti))
    matched: dict[int, TaskRecord] = {}
    used: set[int] = set()
    for _, ci, ti in sorted(pairs, reverse=True):
        if ci not in matched and ti not in used:
            matched[ci] = pool[ti]
            used.add(ti)
    return matched


def discover(
    rows: Iterable[dict[str, Any]],
    *,
    existing: Iterable[TaskRecord] = (),
    embedder: Any = None,
    min_task_examples: int = 20,
) -> Discovery:
    """Tasks in `rows` (as from `catalog.chat_exchanges`), and which row belongs to which.

    Without an embedder, tasks are exactly the fingerprint groups (no split, no merge, no
    centroids). Untagged candidates with fewer than `min_task_examples` rows stay pending
    (reported, not assigned) unless they continue an existing task.
    """
    existing = list(existing)
    by_id = {t.id: t for t in existing}
    discovered = {t.id for t in existing if not t.explicit}
    tagged: dict[str, list[dict[str, Any]]] = defaultdict(list)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        req = row.get("request")
        if not isinstance(req, dict) or not isinstance(req.get("messages"), list):
            continue
        tag = explicit_tag(row, discovered)
        (tagged[tag] if tag else groups[fingerprint(req)]).append(row)
    report: dict[str, Any] = {
        "rows": sum(map(len, tagged.values())) + sum(map(len, groups.values())),
        "explicit_rows": sum(map(len, tagged.values())), "fingerprints": len(groups),
        "embedder": embedder is not None, "groups": [], "merged": [], "pending": [],
    }
    cache: dict[str, Any] = {}
    cands: list[_Candidate] = []
    for tag, group in sorted(tagged.items()):
        sigs = Counter(signature(r["request"]) for r in group)
        c = _Candidate(group, [tag], tag, signature=sigs.most_common(1)[0][0],
                       fingerprints={fingerprint(r["request"]) for r in group})
        if embedder is not None:
            from gateway.embed import request_vectors

            sample = [group[i]["request"] for i in _sample(len(group), SAMPLE)]
            c.centroid = _mean_unit(request_vectors(embedder, sample, system_cache=cache))
        cands.append(c)
    for fp, group in sorted(groups.items()):
        cands += _group_candidates(fp, group, embedder, min_task_examples, cache, report)
    if embedder is not None:
        cands = _merge(cands, report)
    reused = _reuse_ids(cands, existing)
    kept = []
    for i, c in enumerate(cands):
        if c.explicit or i in reused or len(c.rows) >= min_task_examples:
            kept.append((c, reused.get(i)))
        else:
            report["pending"].append({"fingerprints": sorted(c.fingerprints), "count": len(c.rows)})
    taken = set(by_id) | {c.explicit for c, _ in kept if c.explicit}
    fresh_labels = _labels([c for c, _ in kept])
    tasks, assignments = [], []
    for (c, old), fresh_label in zip(kept, fresh_labels, strict=True):
        task_id = c.explicit or (old.id if old else None)
        if task_id is None:
            task_id, n = _task_id(c), 1
            while task_id in taken:  # a fresh id may equal one an older task still holds
                c.parts.append(f"#{n}")
                task_id, n = _task_id(c), n + 1
            taken.add(task_id)
        info = _info(c)
        kind = task_kind(Counter(info["kinds"]).elements())
        prior = old or by_id.get(task_id)
        if prior is None:
            tasks.append(TaskRecord(id=task_id, label=fresh_label, kind=kind,
                                    explicit=c.explicit is not None, info=info))
        else:  # keep its stage and its label (policies may select tasks by label)
            label = fresh_label if c.explicit else prior.label
            tasks.append(dataclasses.replace(prior, label=label, kind=kind, info=info))
        assignments += [(task_id, r["seq"]) for r in c.rows
                        if r.get("seq") is not None and r.get("task") != task_id]
    _dedupe_labels(tasks)
    tasks.sort(key=lambda t: -t.info["count"])
    report["reused"] = len(reused)
    report["tasks"] = [{"id": t.id, "label": t.label, "kind": t.kind, "count": t.info["count"]}
                       for t in tasks]
    return Discovery(tasks, assignments, report)
