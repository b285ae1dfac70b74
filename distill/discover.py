"""Step S3: discover the task types in recorded traffic.

A task is one instruction with one output contract. An explicit task tag always wins.
Rows are first parted by tenant (the namespace of the key that sent them): no task ever
holds two tenants' rows, and two tenants running the same agent get a task each.
Untagged requests are grouped by fingerprint (masked system prompt, tools, response format);
a group is one task unless its instruction templates and answer shapes show several
(`distill.task_split`); groups whose prompts differ by a word or a date, answered alike, merge.
Ids are stable across runs: a task that gains data keeps its id, stage and label (a label
mined from TF-IDF terms gives way to one from the task's instruction; an operator's name
always stays).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from distill.answer_profiles import answered_differently
from distill.task_labels import Label, dedupe_labels, task_labels
from distill.task_split import Candidate, centroid_of, split_group
from distill.templates import alike, words
from gateway.fingerprint import fingerprint, message_text, signature
from gateway.store.catalog import TaskRecord
from gateway.task_ids import is_task_id, task_tenant
from policies.output_kinds import output_kind, task_kind

DISCOVERED_ID = re.compile(r"t-[0-9a-f]{10}")  # ids this module makes; never a client's tag


@dataclass
class Discovery:
    tasks: list[TaskRecord]
    assignments: list[tuple[str | None, int]]  # (task id or none, seq): rows whose task changes
    report: dict[str, Any]


NamespaceOf = Callable[[str | None], str | None]  # a row's key id -> its tenant (None: shared)


def explicit_tag(row: dict[str, Any], discovered: set[str], namespace: str | None = None
                 ) -> str | None:
    """The client's own task tag: the task the row was recorded under (the gateway stores a
    named task as `<namespace>.<name>`, `ServerConfig.client_tasks`), when it is no task of
    ours and, for a tenant, carries the tenant's own prefix. Never the body's bare
    `metadata.task`: that name is the caller's, and another tenant may use it too."""
    tag = row.get("task")
    if not is_task_id(tag) or tag in discovered or DISCOVERED_ID.fullmatch(tag):
        return None
    if namespace is not None and not tag.startswith(namespace + "."):
        return None  # placed there by another tenant's fingerprint (before tenants applied)
    return tag


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


def _info(c: Candidate) -> dict[str, Any]:
    answers = [(a, r["request"]) for r in c.rows if (a := _answer(r)) is not None]
    kinds = Counter(output_kind(a, req) for a, req in answers)
    prompt = [_tokens(_prompt_chars(r["request"])) for r in c.rows]
    info: dict[str, Any] = {
        "fingerprints": sorted(c.fingerprints), "signature": c.signature,
        "systems": sorted(c.systems), "count": len(c.rows),
        "prompt_tokens_p50": _quantile(prompt, 0.5), "prompt_tokens_p99": _quantile(prompt, 0.99),
        "answer_tokens_p99": _quantile([_tokens(_answer_chars(a)) for a, _ in answers], 0.99),
        "kinds": dict(kinds), "tokens_estimate": "chars/4",
    }
    if c.templates:  # the gateway tells tasks sharing a fingerprint apart by these
        info["templates"] = sorted(c.template_hashes())
        info["split"] = c.split
    if c.centroid is not None:
        info["centroid"] = [round(float(x), 5) for x in c.centroid]
    return info


def _task_id(c: Candidate, namespace: str | None) -> str:
    parts = sorted(c.parts) if namespace is None else [f"tenant:{namespace}", *sorted(c.parts)]
    return "t-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:10]


def _systems_alike(a: set[str], b: set[str]) -> bool:
    return any(alike(x.split(), y.split()) for x in a for y in b)


def _templates_alike(a: Candidate, b: Candidate) -> bool:
    """Both unsplit, or an instruction template of one worded like one of the other."""
    if not a.templates or not b.templates:
        return not a.templates and not b.templates
    return any(alike(words(x), words(y)) for x in a.templates for y in b.templates)


def _merge(cands: list[Candidate], report: dict[str, Any]) -> list[Candidate]:
    """Join candidates with the same tools and format whose prompts (and instruction templates)
    differ by a word or a date, unless their answers show two contracts."""
    parent = list(range(len(cands)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(cands):
        for j in range(i + 1, len(cands)):
            b = cands[j]
            if a.explicit or b.explicit or a.signature != b.signature or root(i) == root(j):
                continue
            if a.fingerprints & b.fingerprints:  # parts of one split group stay apart
                continue
            if _systems_alike(a.systems, b.systems) and _templates_alike(a, b) \
                    and not answered_differently(a.profile(), b.profile()):
                parent[root(j)] = root(i)
    joined: dict[int, list[Candidate]] = defaultdict(list)
    for i, c in enumerate(cands):
        joined[root(i)].append(c)
    out = []
    for members in joined.values():
        if len(members) == 1:
            out.append(members[0])
            continue
        report["merged"].append(sorted(p for m in members for p in m.parts))
        rows = sorted((r for m in members for r in m.rows), key=lambda r: r.get("seq") or 0)
        out.append(Candidate(
            rows, [p for m in members for p in m.parts], None, None, members[0].signature,
            set().union(*(m.fingerprints for m in members)),
            set().union(*(m.systems for m in members)),
            [t for m in members for t in m.templates],
            next((m.split for m in members if m.split), None)))
    return out


def _reuse_ids(cands: list[Candidate], existing: list[TaskRecord]) -> dict[int, TaskRecord]:
    """Existing discovered tasks matched to candidates: a shared fingerprint first (with a
    shared instruction template where both have templates), else the same tools and format
    and a prompt a word or a date away. The larger candidate wins a tie."""
    pool = [t for t in existing if not t.explicit]
    pairs: list[tuple[float, int, int, int]] = []
    for ci, c in enumerate(cands):
        if c.explicit:
            continue
        mine = c.template_hashes()
        for ti, t in enumerate(pool):
            fps = set(t.info.get("fingerprints") or [])
            theirs = set(t.info.get("templates") or [])
            if c.fingerprints & fps:
                if mine and theirs:
                    shared = len(mine & theirs) / len(mine | theirs)
                    if shared == 0:
                        continue  # another instruction under the same prompt
                    score = 2.0 + shared
                else:
                    score = 1.0 + len(c.fingerprints & fps) / len(c.fingerprints | fps)
                pairs.append((score, len(c.rows), ci, ti))
            elif t.info.get("signature") == c.signature \
                    and _systems_alike(c.systems, set(t.info.get("systems") or [])):
                pairs.append((0.5, len(c.rows), ci, ti))
    matched: dict[int, TaskRecord] = {}
    used: set[int] = set()
    for _, _, ci, ti in sorted(pairs, reverse=True):
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
    namespace_of: NamespaceOf | None = None,
    max_tasks_per_tenant: int | None = None,
) -> Discovery:
    """Tasks in `rows` (as from `catalog.chat_exchanges`), and which row belongs to which.

    `namespace_of` maps a row's `key_id` to its tenant (`ServerConfig.task_namespace`); rows
    of each tenant are discovered apart, against that tenant's existing tasks only. The
    embedder only gives each task a centroid (the gateway's fallback for requests no
    fingerprint or template places); tasks are the same without one. Candidates with fewer
    than `min_task_examples` rows, named or not, stay pending (reported, not assigned)
    unless they continue an existing task; so do instruction templates rarer than that, and
    a tenant's new tasks past `max_tasks_per_tenant` (its largest are kept).
    """
    existing = list(existing)
    by_tenant: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        req = row.get("request")
        if not isinstance(req, dict) or not isinstance(req.get("messages"), list):
            continue
        by_tenant[namespace_of(row.get("key_id")) if namespace_of else None].append(row)
    report: dict[str, Any] = {
        "rows": 0, "explicit_rows": 0, "fingerprints": 0, "embedder": embedder is not None,
        "groups": [], "merged": [], "pending": [], "reused": 0, "tenants": len(by_tenant),
    }
    taken = {t.id for t in existing}
    discovered = {t.id for t in existing if not t.explicit}
    found: list[tuple[Candidate, TaskRecord | None, str | None]] = []
    for tenant in sorted(by_tenant, key=lambda t: t or ""):
        mine = [t for t in existing if task_tenant(t.info) == tenant]
        kept = _tenant_candidates(by_tenant[tenant], mine, discovered, tenant, embedder,
                                  min_task_examples, report)
        cap = max_tasks_per_tenant
        if cap is not None:
            room = max(0, cap - len(mine))
            new = sorted((k for k in kept if k[1] is None and not _known(k[0], mine)),
                         key=lambda k: -len(k[0].rows))
            over = {id(c) for c, _ in new[room:]}
            kept = [k for k in kept if id(k[0]) not in over]
            for c, _ in new[room:]:
                report["pending"].append({"fingerprints": sorted(c.fingerprints),
                                          "count": len(c.rows), "tenant": tenant,
                                          "why": f"the tenant has {cap} tasks (the cap)"})
        found += [(c, old, tenant) for c, old in kept]
    by_id = {t.id: t for t in existing}
    taken |= {c.explicit for c, _, _ in found if c.explicit}
    fresh_labels = task_labels([c for c, _, _ in found])
    tasks: list[TaskRecord] = []
    assignments: list[tuple[str | None, int]] = []
    for (c, old, tenant), fresh_label in zip(found, fresh_labels, strict=True):
        task_id = c.explicit or (old.id if old else None)
        if task_id is None:
            task_id, n = _task_id(c, tenant), 1
            while task_id in taken:  # a fresh id may equal one an older task still holds
                c.parts.append(f"#{n}")
                task_id, n = _task_id(c, tenant), n + 1
            taken.add(task_id)
        info = _info(c)
        if tenant is not None:
            info["tenant"] = tenant
        kind = task_kind(Counter(info["kinds"]).elements())
        prior = old or by_id.get(task_id)
        label, info["label_from"] = kept_label(prior, fresh_label)
        if prior is None:
            tasks.append(TaskRecord(id=task_id, label=label, kind=kind,
                                    explicit=c.explicit is not None, info=info))
        else:  # keep its stage and, mostly, its label (see kept_label)
            tasks.append(dataclasses.replace(prior, label=label, kind=kind, info=info))
        assignments += [(task_id, r["seq"]) for r in c.rows
                        if r.get("seq") is not None and r.get("task") != task_id]
    # A row left under another tenant's task (an older gateway matched prompts across
    # tenants) is taken out of it, whether or not its own tenant has a task for it yet.
    placed = {r.get("seq") for c, _, _ in found for r in c.rows}
    owner = {t.id: task_tenant(t.info) for t in existing}
    for tenant, tenant_rows in by_tenant.items():
        assignments += [(None, r["seq"]) for r in tenant_rows
                        if r.get("seq") is not None and r["seq"] not in placed
                        and r.get("task") in owner and owner[r["task"]] != tenant]
    dedupe_labels(tasks)
    tasks.sort(key=lambda t: -t.info["count"])
    report["tasks"] = [{"id": t.id, "label": t.label, "kind": t.kind, "count": t.info["count"]}
                       for t in tasks]
    return Discovery(tasks, assignments, report)


def kept_label(prior: TaskRecord | None, fresh: Label) -> tuple[str, str]:
    """The label a task keeps, and its source. An operator's name always stays; a client's
    task name is its name; a mined label stays too (policies may select tasks by label),
    unless it came from TF-IDF terms and the task can now be named by what it is asked."""
    if prior is None:
        return fresh.text, fresh.source
    if prior.named_by is not None:
        return prior.label, "operator"
    if fresh.source == "explicit":
        return fresh.text, fresh.source
    source = prior.info.get("label_from") or _legacy_source(prior.label)
    if source == "terms" and fresh.source != "terms":
        return fresh.text, fresh.source
    return prior.label, source


def _legacy_source(label: str) -> str:
    """The source of a label written before labels recorded theirs: tool and schema names
    had prefixes; anything else was TF-IDF terms (or "chat")."""
    return "tools" if label.startswith("tools: ") else (
        "schema" if label.startswith("json: ") else "terms")


def _known(c: Candidate, mine: list[TaskRecord]) -> bool:
    """A named candidate whose task the tenant already has (no new task: never capped)."""
    return c.explicit is not None and any(t.id == c.explicit for t in mine)


def _tenant_candidates(
    rows: list[dict[str, Any]], existing: list[TaskRecord], discovered: set[str],
    tenant: str | None, embedder: Any, min_task_examples: int, report: dict[str, Any],
) -> list[tuple[Candidate, TaskRecord | None]]:
    """One tenant's candidates worth a task, each with the existing task it continues."""
    tagged: dict[str, list[dict[str, Any]]] = defaultdict(list)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        tag = explicit_tag(row, discovered, tenant)
        (tagged[tag] if tag else groups[fingerprint(row["request"])]).append(row)
    report["rows"] += len(rows)
    report["explicit_rows"] += sum(map(len, tagged.values()))
    report["fingerprints"] += len(groups)
    cache: dict[str, Any] = {}
    cands: list[Candidate] = []
    for tag, group in sorted(tagged.items()):
        sigs = Counter(signature(r["request"]) for r in group)
        cands.append(Candidate(group, [tag], tag, signature=sigs.most_common(1)[0][0],
                               fingerprints={fingerprint(r["request"]) for r in group}))
    for fp, group in sorted(groups.items()):
        cands += split_group(fp, group, embedder, min_task_examples, cache, report)
    cands = _merge(cands, report)
    if embedder is not None:
        for c in cands:
            if c.centroid is None:  # explicit and merged candidates
                c.centroid = centroid_of(c.rows, embedder, cache)
    reused = _reuse_ids(cands, existing)
    report["reused"] += len(reused)
    kept = []
    for i, c in enumerate(cands):
        if i in reused or len(c.rows) >= min_task_examples or _known(c, existing):
            kept.append((c, reused.get(i)))
        else:  # a name any key can mint is no task (nor metric label) until it has data
            report["pending"].append({"fingerprints": sorted(c.fingerprints),
                                      "count": len(c.rows), "tenant": tenant,
                                      **({"name": c.explicit} if c.explicit else {})})
    return kept
