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
from dataclasses import dataclass

from gateway.fingerprint import words_alike

# A unit is template text only if at least this many requests of the group share it: a
# sentence seen once is instance text by definition (Drain needs two messages for a template).
MIN_REPEAT = 2
# A template's units recur at least this share as often as its most frequent unit: an
# instruction recurs once per request of its task, a user text once per repeat, so the opening
# run stops at the instance. Measured with `bench/discovery_bench.py` (generic variants, 40 to
# 1000 requests per task): the first user-text sentence after an instruction recurs at most
# 0.15x as often as the instruction on τ²-bench airline+retail, 0.31x on AgentDojo; the
# units of one instruction recur equally often (1.0).
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


@dataclass
class Template:
    """Requests sharing one instruction template."""

    key: tuple[str, ...]  # its units, in message order
    rows: list[int]  # indices of the requests that carry it
    slotted: bool  # most of its requests carry rarer text beside it: an instance in a slot


def _keys(unit_lists: Sequence[Sequence[str]], freq: Counter[str]) -> list[tuple[str, ...]]:
    """Each request's template key: the recurring units it opens with (an instruction before its
    input, as in Drain's positional parse tree), else those it closes with (an instruction
    after its input); a run keeps the units that recur at least TEMPLATE_SHARE as often as
    its most frequent one. () when the request opens and closes with instance text."""
    def kept(run: list[str]) -> list[str]:
        top = max((freq[u] for u in run), default=0)
        return [u for u in run if freq[u] >= TEMPLATE_SHARE * top]

    return [tuple(kept(_run(units, freq)) or kept(_run(units[::-1], freq)[::-1]))
            for units in unit_lists]


def _nest(keys: Sequence[tuple[str, ...]]) -> dict[tuple[str, ...], list[int]]:
    """Row indices per key, where a key that holds a shorter key is that template with an
    optional sentence ("Thanks." after the request in a third of them) and joins the longest
    such key, when only one is longest."""
    rows: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        if key:
            rows[key].append(i)
    accepted: list[tuple[tuple[str, ...], frozenset[str]]] = []
    joined: dict[tuple[str, ...], list[int]] = {}
    for key, idx in sorted(rows.items(), key=lambda kv: (len(kv[0]), -len(kv[1]), kv[1][0])):
        units = frozenset(key)
        inside = [(len(au), a) for a, au in accepted if au < units]
        longest = max((n for n, _ in inside), default=0)
        parents = [a for n, a in inside if n == longest]
        if len(parents) == 1:
            joined[parents[0]] += idx
        else:
            accepted.append((key, units))
            joined[key] = list(idx)
    return joined


def mine_templates(unit_lists: Sequence[Sequence[str]], min_rows: int) -> list[Template]:
    """The templates at least `min_rows` requests share (rarer ones cannot be a task's
    instruction), largest first; requests without one are in none."""
    freq = Counter(u for units in unit_lists for u in set(units))
    out = []
    for key, idx in _nest(_keys(unit_lists, freq)).items():
        if len(idx) < max(min_rows, MIN_REPEAT):
            continue
        floor = min(freq[u] for u in key)
        inside = set(key)
        with_slot = sum(1 for i in idx if any(freq[u] < floor for u in unit_lists[i]
                                              if u not in inside))
        out.append(Template(key, sorted(idx), 2 * with_slot > len(idx)))
    out.sort(key=lambda t: (-len(t.rows), t.rows[0]))
    return out


def words(texts: Sequence[str]) -> list[str]:
    return " ".join(texts).split()


def alike(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two word sequences differ only by an edit (`gateway.fingerprint.ALIKE_RATIO`)."""
    return words_alike(list(a), list(b))


def carried_in_user_turn(system: str, templates: Sequence[Template]) -> bool:
    """Whether the instruction lives in the user turn: at least two templates have a slot
    (an instance varies beside them; a request repeated word for word has none), and they
    say more, in words, than the system prompt does, as under "You are a helpful assistant."
    with "Classify this ticket as ..." in the user turn.
    """
    slotted = sorted(len(words(t.key)) for t in templates if t.slotted)
    return len(slotted) >= 2 and slotted[len(slotted) // 2] > len(system.split())
