"""Where a pretrained candidate's next run starts: the adapter its last run on the task left.

On a CPU a run of SmolLM2 makes a few hundred small steps in its budget, far from what a
written answer needs (WikiSQL: 0.56 exact after one run); a task's successor is trained when
its data has grown, and starting over threw the last run's steps away. A successor of the
same base model therefore starts from its predecessor's LoRA adapter, on the grown data, so a
task's runs add up. Only where that cannot leak: the same task (so the same tenant), the same
way of asking (copy slots or the raw request), and a held-out share no larger than the
predecessor's — held-out membership is `hash % 100 < percent`, so a smaller share only moves
requests the predecessor never saw into training, never one it trained on into the judged set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.registry import Registry, RegistryError
from gateway.store.catalog import StudentRecord

ADAPTER = "adapter_config.json"


@dataclass(frozen=True)
class WarmStart:
    path: Path  # the predecessor's version directory (its adapter)
    version: int


def warm_start(students: list[StudentRecord], registry: Registry, *, base_model: str,
               slots: bool, heldout_percent: int, exemplars: int = 0) -> WarmStart | None:
    """The newest of the task's `students` a run of `base_model` may start from, or None."""
    for s in sorted(students, key=lambda s: s.version, reverse=True):
        if s.base_model != base_model or s.status in ("error", "pruned"):
            continue
        if s.metrics.get("student_kind", "generative") != "generative":
            continue
        try:
            path = registry.resolve(s.path)
            meta = registry.read_meta(path)
        except (RegistryError, OSError, ValueError):
            continue
        if not (path / ADAPTER).is_file():
            continue  # a full model (scratch, method "full"): nothing to continue from
        if bool((meta.get("copy_slots") or {}).get("enabled")) != slots:
            continue  # asked another way: its adapter learnt another input
        if ((meta.get("exemplars") or {}).get("k") or 0) != exemplars:
            continue  # with another number of worked examples: another input too
        held = s.metrics.get("heldout_percent")
        if not isinstance(held, int) or held < heldout_percent:
            continue  # some of what it trained on is judged now
        return WarmStart(path, s.version)
    return None


def chain_agreements(students: list[StudentRecord], base_model: str) -> list[float]:
    """Held-out agreement of the task's newest run of `base_model` and of each run it went
    on from (`training.warm_from`), oldest first; [] when the model has not run here."""
    runs = {s.version: s for s in students
            if s.base_model == base_model and s.status != "error"
            and isinstance(s.metrics.get("agreement"), int | float)}
    if not runs:
        return []
    out = []
    version: int | None = max(runs)
    while version is not None and version in runs:
        s = runs[version]
        out.append(float(s.metrics["agreement"]))
        link = (s.metrics.get("training") or {}).get("warm_from")
        earlier = int(link[1:]) if isinstance(link, str) and link[1:].isdigit() else None
        version = earlier if earlier is not None and earlier < version else None
    return out[::-1]


def going_on(agreements: list[float], bar: float) -> str | None:
    """Why another run going on from the last is not worth its minutes, or None.

    `agreements`: a chain's held-out agreement, oldest first (`chain_agreements`). Measured
    (docs/students.md, SmolLM2 on this CPU): every first run that went on gained (WikiSQL
    +0.07 and +0.05, restaurants +0.19 and +0.38), so it is always made. A held-out set of
    60-100 requests moves a few points by chance, and one flat run is not a plateau:
    restaurants went 0.38 -> 0.76 -> 0.76 -> 0.90. So the runs stop when two in a row did
    not raise the chain's best, or when the last two both gained but by shrinking amounts
    whose sum (each gain the last's share of the one before: a geometric series, no fitted
    constant) leaves the chain under the bar (WikiSQL 0.55 -> 0.60 -> 0.61 tends to ~0.61).
    """
    if len(agreements) < 3:
        return None
    best_before = max(agreements[:-2])
    if max(agreements[-2:]) <= best_before:
        return (f"its last two runs, going on from the ones before, did not beat its best "
                f"({best_before:.2f}: then {agreements[-2]:.2f}, {agreements[-1]:.2f})")
    prior, gain = agreements[-2] - agreements[-3], agreements[-1] - agreements[-2]
    if 0 < gain < prior:
        ratio = gain / prior
        ceiling = agreements[-1] + gain * ratio / (1 - ratio)
        if ceiling < bar:
            return (f"its runs' gains shrink (+{prior:.2f}, then +{gain:.2f}): going on, "
                    f"it levels off near {ceiling:.2f}, under the bar ({bar:.2f})")
    return None
