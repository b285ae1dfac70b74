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
# A request's template is its units recurring at least this share as often as its most
# frequent unit. Instruction units recur once per request of their task; instance sentences
# recur once per repeat of that instance. Measured with `bench/discovery_bench.py` on the
# τ²-bench (airline, retail) and AgentDojo (4 suites) generic-prompt workloads: instance
# sentences recur at most 0.09 as often as the instruction they come with (each user text is
# asked of 3-4 tasks a few times each), instructions that share a task's key 1.0.
TEMPLATE_SHARE = 0.5


def template_keys(unit_lists: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    """Each request's template: its units that recur in the group almost as often as its most
    frequent one (in message order), or () when none of its units recurs at all."""
    freq = Counter(u for units in unit_lists for u in set(units))
    keys = []
    for units in unit_lists:
        top = max((freq[u] for u in units), default=0)
        if top < MIN_REPEAT:
            keys.append(())
            continue
        floor = max(MIN_REPEAT, TEMPLATE_SHARE * top)
        keys.append(tuple(dict.fromkeys(u for u in units if freq[u] >= floor)))
    return keys


def template_groups(
    keys: Sequence[tuple[str, ...]], min_rows: int
) -> dict[tuple[str, ...], list[int]]:
    """Row indices per template shared by at least `min_rows` rows (too rare to be a task's
    instruction otherwise), largest first; rows without such a template are left out."""
    rows: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        if key:
            rows[key].append(i)
    kept = [(k, idx) for k, idx in rows.items() if len(idx) >= max(min_rows, MIN_REPEAT)]
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

