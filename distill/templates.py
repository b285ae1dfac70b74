"""Instruction templates: the constant sentences of user messages, apart from their variable slots.

Log-template miners such as Drain separate a message's constant tokens from its variable ones
by how often they recur across messages. The same holds one level up for agent traffic: under
a generic system prompt the instruction ("Classify this ticket...", a whole policy) is a set
of sentences repeated across many requests, while the instance (the ticket) varies. Here the
units are the masked sentences and lines of `gateway.fingerprint.instruction_units`, so the
gateway can match a request to a mined template with the same function.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from gateway.fingerprint import words_alike

# A unit is template text only if at least this many requests of the group share it: a
# sentence seen once is instance text by definition (Drain needs two messages for a template).
MIN_REPEAT = 2
# A template's units recur at least this share as often as its most frequent unit.
# Instruction units recur once per request of their task; instance sentences recur once per
# repeat of that instance. Measured with `bench/discovery_bench.py` on the
# τ²-bench (airline, retail) and AgentDojo (4 suites) generic-prompt workloads: instance
# sentences recur at most 0.09 as often as the instruction they come with (each user text is
# asked of 3-4 tasks a few times each), instructions that share a task's key 1.0.
TEMPLATE_SHARE = 0.5


def _run(units: Sequence[str], freq: Counter[str]) -> list[str]:
    """The leading units that recur: each at least TEMPLATE_SHARE as often as the most
    frequent one before it (and MIN_REPEAT times); the instance starts where that fails."""
    run: list[str] = []
    top = 0
    for u in units:
        top = max(top, freq[u])
        if freq[u] < max(MIN_REPEAT, TEMPLATE_SHARE * top):
            break
        run.append(u)
    return run


def template_keys(unit_lists: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    """Each request's template: the recurring units it opens with and closes with (an
    instruction comes before its input or after it, as in Drain's positional parse tree),
    or () when it opens and closes with instance text."""
    freq = Counter(u for units in unit_lists for u in set(units))
    keys = []
    for units in unit_lists:
        head = _run(units, freq)
        tail = _run(units[::-1], freq)[::-1] if len(head) < len(units) else []
        keys.append(tuple(dict.fromkeys(head + tail)))
    return keys


def template_groups(
    keys: Sequence[tuple[str, ...]], min_rows: int
) -> dict[tuple[str, ...], list[int]]:
    """Row indices per template shared by at least `min_rows` rows (too rare to be a task's
    instruction otherwise), largest first; rows without such a template are left out.

    A key nested in exactly one more common key (or holding it) is that template with an
    optional sentence ("Hi," before the instruction in a third of the requests) and joins it.
    """
    rows: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        if key:
            rows[key].append(i)
    accepted: list[tuple[tuple[str, ...], frozenset[str]]] = []
    joined: dict[tuple[str, ...], list[int]] = {}
    for key, idx in sorted(rows.items(), key=lambda kv: (-len(kv[1]), kv[1][0])):
        units = frozenset(key)
        parents = [a for a, au in accepted if au <= units or units <= au]
        if len(parents) == 1:
            joined[parents[0]] += idx
        else:
            accepted.append((key, units))
            joined[key] = list(idx)
    kept = [(k, sorted(idx)) for k, idx in joined.items() if len(idx) >= max(min_rows, MIN_REPEAT)]
    kept.sort(key=lambda kv: (-len(kv[1]), kv[1][0]))
    return dict(kept)


def words(texts: Sequence[str]) -> list[str]:
    return " ".join(texts).split()


def alike(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two word sequences differ only by an edit (`gateway.fingerprint.ALIKE_RATIO`)."""
    return words_alike(list(a), list(b))


def carried_in_user_turn(system: str, templates: Sequence[tuple[str, ...]]) -> bool:
    """Whether the instruction lives in the user turn: the group's templates say more (in
    words, the median template) than its system prompt does, as under "You are a helpful
    assistant." with "Classify this ticket as ..." in each user message."""
    if len(templates) < 2:
        return False
    sizes = sorted(len(words(t)) for t in templates)
    return sizes[len(sizes) // 2] > len(system.split())

