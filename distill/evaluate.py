"""Held-out evaluation: a trained student against the teacher's answers it never saw, and
against the repeats of requests it was trained on (`Curated.judged`).

Each request is answered once and compared with every answer the teacher gave it that counts
as evidence (`Example.refs`), each as often as it was given: the summary's `n` counts traffic,
not distinct requests (`distinct` counts those). The comparators are the ones live shadow
evaluation uses (`policies.compare`), chosen by the task's output kind; free text is compared
by sentence-embedding cosine, or by the teacher's verdict where the task's policy says
`text_judge = "teacher"` (`text_judge`: policies.judge, distill.judge_client). The summary
carries agreement with its Wilson interval, the valid-format rate and the student's latency.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from distill.curate import Example
from gateway.embed import SharedEmbedder
from policies.code_text import is_code
from policies.compare import NotComparable, compare, texts_identical
from policies.judge import Verdict, judged_comparison, text_pair
from policies.stats import wilson

Similarity = Callable[[list[tuple[str, str]]], list[float]]
# Free-text pairs (student text, teacher text, request) -> a verdict each, None: not judged
TextJudge = Callable[[list[tuple[str, str, dict[str, Any] | None]]], list[Verdict | None]]


@dataclass
class Evaluation:
    summary: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)  # per example, for the store

    @property
    def lower(self) -> float:
        return float(self.summary["lower"])


def embedding_similarity(embedder: SharedEmbedder | None = None) -> Similarity:
    """Cosine of all-MiniLM-L6-v2 embeddings for pairs of texts (loaded on first use)."""
    embedder = embedder or SharedEmbedder()

    def similarity(pairs: list[tuple[str, str]]) -> list[float]:
        if not pairs:
            return []
        vecs = embedder.encode([t for pair in pairs for t in pair])
        return [float(vecs[2 * i] @ vecs[2 * i + 1]) for i in range(len(pairs))]

    return similarity


def refs_of(ex: Example) -> list[tuple[dict[str, Any] | None, int]]:
    """The answers `ex` is judged against, with their counts (its own answer once when the
    example was built without them, as in tests and benchmarks)."""
    return ex.refs or [(ex.answer, 1)]


def request_of(ex: Example, max_tokens: int) -> dict[str, Any]:
    return {**ex.request(), "max_tokens": max_tokens}


# A judgement that can no longer reach the bar stops generating: the rest would only refine
# how far under it the student is. Only a failure is decided early (stopping early for a
# pass would make passes likelier than the gate's confidence says); looks come at 32, 64,
# 128, ... answers, each against the upper bound at 0.99, so a student whose agreement is at
# the bar is stopped at some look with probability under 3% (one-sided 0.5% a look; five
# looks in a judgement of under 1,024 answers). Why (2026-12-07, this 2-core CPU): SmolLM2
# judged on 200 held-out text-to-SQL questions of advising (answers up to 434 tokens) was
# still generating 34 minutes after its 600 s of training, holding the worker; a rerun
# with the stop judged 32 answers (0.31 [0.18, 0.49]) and was done.
FUTILITY_CONFIDENCE = 0.99
FIRST_LOOK = 32


def evaluate(
    student: Any,
    heldout: list[Example],
    kind: str,
    *,
    confidence: float,
    text_threshold: float,
    max_tokens: int = 256,
    batch_size: int = 8,
    similarity: Similarity | None = None,
    text_judge: TextJudge | None = None,
    stop_below: float | None = None,
) -> Evaluation:
    """Generate an answer for every held-out example and compare it with the teacher's
    (free text by `text_judge` when given: a pair it did not judge is no evidence).

    `stop_below`: the bar (the gate's `min_agreement`); generation stops once the upper
    bound of the agreement so far (FUTILITY_CONFIDENCE) is under it — the student can
    neither pass nor nearly pass — and the summary's `stopped_early` says after how many.
    Not with a `text_judge`, whose sample of pairs is drawn over the whole set."""
    if stop_below is not None:  # each look's answers a fair share of held-out and repeats
        heldout = sorted(heldout, key=lambda ex: ex.key)  # a hash: an order of its own
    # one embedder for every look and the final tally (it loads on first use, if ever)
    similarity = similarity or embedding_similarity()
    answers: list[Any] = []
    per_example_ms: list[float] = []
    completion_tokens = 0
    gen_seconds = 0.0
    look = FIRST_LOOK
    stopped: dict[str, Any] | None = None
    for start in range(0, len(heldout), batch_size):
        batch = heldout[start:start + batch_size]
        began = time.perf_counter()
        gens = student.generate([request_of(ex, max_tokens) for ex in batch],
                                max_new_tokens=max_tokens)
        took = time.perf_counter() - began
        gen_seconds += took
        per_example_ms += [took * 1000 / len(batch)] * len(batch)
        completion_tokens += sum(g.completion_tokens for g in gens)
        answers += gens
        if stop_below is None or text_judge is not None or len(answers) < look \
                or len(answers) >= len(heldout):
            continue
        look *= 2
        so_far = _tally(heldout[:len(answers)], answers, kind, per_example_ms,
                        text_threshold=text_threshold, max_tokens=max_tokens,
                        similarity=similarity, text_judge=None)
        upper = wilson(so_far.agree, so_far.n, FUTILITY_CONFIDENCE)[1]
        if so_far.n and upper < stop_below:
            stopped = {"after": len(answers), "of": len(heldout),
                       "upper": round(upper, 4), "confidence": FUTILITY_CONFIDENCE,
                       "bar": stop_below}
            break

    heldout = heldout[:len(answers)]
    t = _tally(heldout, answers, kind, per_example_ms, text_threshold=text_threshold,
               max_tokens=max_tokens, similarity=similarity, text_judge=text_judge)
    n, agree = t.n, t.agree
    lower, upper = wilson(agree, n, confidence)
    summary: dict[str, Any] = {
        "n": n, "agree": agree, "agreement": agree / n if n else 0.0,
        "lower": lower, "upper": upper, "confidence": confidence,
        "distinct": len(t.rows),
        "valid_rate": t.valid / n if n else 0.0,
        "mean_score": statistics.fmean(t.scores) if t.scores else 0.0,
        "student_p50_ms": statistics.median(per_example_ms) if per_example_ms else None,
        "tokens_per_s": completion_tokens / gen_seconds if gen_seconds else None,
        "kind": kind,
        "text_judge": "teacher" if text_judge is not None else "embedding",
    }
    if stopped is not None:
        summary["stopped_early"] = stopped
    if text_judge is not None:
        summary["judged_pairs"] = sum(1 for v in t.verdicts.values() if v is not None)
        summary["judge_failures"] = sum(1 for v in t.verdicts.values() if v and v.failed)
        summary["unjudged"] = t.unjudged
    return Evaluation(summary, t.rows)


@dataclass
class _Tally:
    n: int = 0
    agree: int = 0
    valid: int = 0
    unjudged: int = 0
    scores: list[float] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    verdicts: dict[int, Verdict | None] = field(default_factory=dict)


def _tally(heldout: list[Example], answers: list[Any], kind: str, per_example_ms: list[float],
           *, text_threshold: float, max_tokens: int, similarity: Similarity,
           text_judge: TextJudge | None) -> _Tally:
    """Every answer compared with each teacher answer its request counts (`refs_of`)."""
    pairs = [(i, ref, count) for i, ex in enumerate(heldout) for ref, count in refs_of(ex)]
    verdicts = _judge_texts(text_judge, pairs, answers, heldout, kind, max_tokens) \
        if text_judge is not None else {}
    sims: dict[int, float] = {}  # by index into `pairs`
    # a tool-call task's text turns are compared as text (by the judge, when there is one)
    if kind in ("text", "tool_call") and text_judge is None:
        pending = []
        for j, (i, ref, _) in enumerate(pairs):
            a = str(answers[i].message.get("content") or "")
            b = str((ref or {}).get("content") or "")
            if not (a.strip() and b.strip()):
                continue
            if texts_identical(a, b):
                sims[j] = 1.0
            elif not is_code(b):  # code is compared by its tokens (policies.code_text)
                pending.append((j, a, b))
        if pending:
            for (j, _, _), value in zip(
                pending, similarity([(a, b) for _, a, b in pending]), strict=True
            ):
                sims[j] = value

    rows: dict[int, dict[str, Any]] = {}  # per request: its first comparison, for the store
    t = _Tally(verdicts=verdicts)
    for j, (i, ref, count) in enumerate(pairs):
        ex, gen = heldout[i], answers[i]
        if ref is None:  # the teacher gave too many different answers to match: a miss
            t.n += count
            continue
        try:
            if j in verdicts:
                verdict = verdicts[j]
                if verdict is None:  # past the judge's budget: no evidence either way
                    t.unjudged += count
                    continue
                c = judged_comparison(kind, gen.message, ref, request_of(ex, max_tokens),
                                      verdict)
            else:
                c = compare(kind, gen.message, ref, request=request_of(ex, max_tokens),
                            similarity=sims.get(j), text_threshold=text_threshold)
        except NotComparable:
            continue  # the teacher's answer is no usable reference for this kind
        t.n += count
        t.agree += count if c.agree else 0
        t.valid += count if c.valid else 0
        t.scores += [c.score] * count
        rows.setdefault(i, {"request_id": ex.request_id, "score": c.score, "agree": c.agree,
                            "valid": c.valid, "detail": c.detail, "student": gen.message,
                            "teacher": ref, "latency_ms": per_example_ms[i], "weight": 0})
        rows[i]["weight"] += count
    t.rows = list(rows.values())
    return t


def _judge_texts(text_judge: TextJudge, pairs: list[tuple[int, dict[str, Any] | None, int]],
                 answers: list[Any], heldout: list[Example], kind: str,
                 max_tokens: int) -> dict[int, Verdict | None]:
    """The judge's verdict on every free-text pair, by index into `pairs` (structured pairs
    are left to the ordinary comparators)."""
    todo = []
    for j, (i, ref, _) in enumerate(pairs):
        texts = text_pair(kind, answers[i].message, ref) if ref is not None else None
        if texts is not None:
            todo.append((j, (*texts, request_of(heldout[i], max_tokens))))
    if not todo:
        return {}
    found = text_judge([item for _, item in todo])
    return {j: v for (j, _), v in zip(todo, found, strict=True)}


def with_new_requests(ev: Evaluation, heldout_ids: set[str], new_mass: float,
                      confidence: float) -> Evaluation:
    """The judgement corrected for requests never seen at all. Judged occurrences stand for
    requests seen before; the next request is a new one with probability `new_mass` (Good-
    Turing: the share of requests seen once), and on those the student does as on its
    held-out requests taken once each. So the agreement is the mixture of the two, and its
    counts are the judged `n` with agreements at that rate (a loop benchmark on SNIPS tool
    calls judged 0.95 without it and met 0.86 live: new requests were 12% of live traffic
    and the student got 3% of them; docs/distillation.md)."""
    s = ev.summary
    held = [r for r in ev.rows if r["request_id"] in heldout_ids]
    n = int(s["n"])
    if not n or not held or new_mass <= 0.0:
        return ev
    mass = min(1.0, new_mass)
    held_rate = sum(1 for r in held if r["agree"]) / len(held)
    rate = (1.0 - mass) * (s["agree"] / n) + mass * held_rate
    agree = min(n, round(rate * n))
    lower, upper = wilson(agree, n, confidence)
    return Evaluation({**s, "agree": agree, "agreement": agree / n, "lower": lower,
                       "upper": upper, "judged_agree": s["agree"], "new_request_mass":
                       round(mass, 4), "heldout_distinct_agreement": round(held_rate, 4)},
                      ev.rows)
