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
               slots: bool, heldout_percent: int) -> WarmStart | None:
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
        held = s.metrics.get("heldout_percent")
        if not isinstance(held, int) or held < heldout_percent:
            continue  # some of what it trained on is judged now
        return WarmStart(path, s.version)
    return None
