"""Near misses and shadow's exit: held-out and live evidence pooled, tested at doubling looks.

A student whose held-out upper bound reaches the bar but whose lower bound does not (or
whose held-out set is too small) is a near miss: it may prove itself in shadow, where the
teacher still serves. Shadow is left when held-out and live comparisons together pass the
lower-bound gate. The gate runs every few seconds; testing the growing live count at every
run would promote a student at the bar far more often than `confidence` says (peeking), so
the exit is tested only at checkpoints where live evidence doubles (min_live, 2·min_live,
4·min_live, …), each on the first comparisons up to its checkpoint, and look k spends
α·2^-(k+1) of α = 1 − confidence: the looks together never spend more than α.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from policies.stats import wilson

HeldoutVerdict = Literal["passed", "near", "failed"]
MAX_LOOKS = 60  # 2^60 comparisons: past any traffic; keeps the checkpoint loop finite


def heldout_verdict(n: int, lower: float, upper: float, min_agreement: float,
                    min_heldout: int) -> HeldoutVerdict:
    """Distill's verdict on a held-out evaluation: passed (the full gate), near (only the
    upper bound reaches the bar, or the set is smaller than `min_heldout`), else failed."""
    if n >= min_heldout and lower >= min_agreement:
        return "passed"
    if n > 0 and upper >= min_agreement:
        return "near"
    return "failed"


def checkpoints(live_n: int, min_live: int) -> list[int]:
    """The live counts at which shadow's exit is tested, up to `live_n`:
    min_live, 2·min_live, 4·min_live, …"""
    if min_live < 1:
        raise ValueError(f"min_live must be at least 1, got {min_live}")
    out: list[int] = []
    c = min_live
    while c <= live_n and len(out) < MAX_LOOKS:
        out.append(c)
        c *= 2
    return out


def look_confidence(k: int, confidence: float) -> float:
    """The two-sided confidence of look k (0-based): 1 − α·2^-(k+1), with α = 1 − confidence.
    The looks' error rates sum to α·(1/2 + 1/4 + …) < α."""
    if k < 0:
        raise ValueError(f"look index must be ≥ 0, got {k}")
    return 1.0 - (1.0 - confidence) * 2.0 ** -(k + 1)


@dataclass(frozen=True, slots=True)
class Look:
    """One test of shadow's exit: the held-out set pooled with the first `live_n` live
    comparisons, at look k's confidence."""

    k: int
    live_n: int  # the checkpoint: live comparisons counted in this look
    live_agree: int
    n: int  # pooled comparisons: held-out + live
    agree: int
    confidence: float
    lower: float
    upper: float


@dataclass(frozen=True, slots=True)
class ShadowExit:
    passed: Look | None  # the first look whose pooled lower bound reached the bar
    last: Look | None  # the latest look taken (for a hold's reason); None before min_live
    next_at: int  # live comparisons at which the next look is taken


def shadow_exit(heldout_agree: int, heldout_n: int, prefix_agree: Sequence[int],
                min_live: int, min_agreement: float, confidence: float) -> ShadowExit:
    """Test shadow's exit at every checkpoint reached so far.

    `prefix_agree[k]` is how many of the first min_live·2^k live comparisons (in the order
    they were recorded) agreed; the caller passes one per checkpoint reached. Because each
    look is fixed once its checkpoint is reached, asking again (the gate every few seconds)
    never adds a look: the false-promotion rate stays under α however often the gate runs.
    """
    passed = last = None
    for k, agree in enumerate(prefix_agree[:MAX_LOOKS]):
        live_n = min_live * 2**k
        if not 0 <= agree <= live_n:
            raise ValueError(f"look {k}: {agree} agreements of {live_n} live comparisons")
        n, pooled = heldout_n + live_n, heldout_agree + agree
        conf = look_confidence(k, confidence)
        lower, upper = wilson(pooled, n, conf)
        last = Look(k, live_n, agree, n, pooled, conf, lower, upper)
        if passed is None and lower >= min_agreement:
            passed = last
    return ShadowExit(passed, last, min_live * 2 ** len(prefix_agree))
