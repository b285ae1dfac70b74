"""The student registry on disk: `students/<task>/<version>/`.

A version directory holds the model or PEFT adapter, the tokenizer, and `slimgate.json`
(training config, data hash and counts, held-out metrics, created time). A directory
without `slimgate.json` is an interrupted run and is never listed. Every path is confined
to the registry root: task ids are checked, and resolved paths must stay inside.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from gateway.task_ids import is_task_id

META = "slimgate.json"


class RegistryError(ValueError):
    """A task id or path that would leave the students directory."""


class Registry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def task_dir(self, task_id: str) -> Path:
        if not is_task_id(task_id):
            raise RegistryError(f"task id {task_id!r} is not a safe directory name")
        path = (self.root / task_id).resolve()
        if path.parent != self.root:
            raise RegistryError(f"task id {task_id!r} resolves outside the students directory")
        return path

    def version_dir(self, task_id: str, version: int) -> Path:
        if version < 1:
            raise RegistryError(f"version must be ≥ 1, got {version}")
        return self.task_dir(task_id) / f"v{version}"

    def resolve(self, relative: str) -> Path:
        """A stored relative path, checked to stay inside the registry."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise RegistryError(f"path {relative!r} leaves the students directory")
        return path

    def private_dir(self, path: Path) -> Path:
        """Create `path` inside the registry, and every missing directory from the root down,
        readable by the owner only (0700): students hold what they learnt from traffic."""
        path = path.resolve()
        if not path.is_relative_to(self.root):
            raise RegistryError(f"path {str(path)!r} leaves the students directory")
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        current = self.root
        for part in path.relative_to(self.root).parts:
            current = current / part
            current.mkdir(mode=0o700, exist_ok=True)
        return path

    def relative(self, path: Path) -> str:
        return str(path.resolve().relative_to(self.root))

    def write_meta(self, path: Path, meta: dict[str, Any]) -> None:
        """Written last: its presence marks the version complete."""
        meta = {**meta, "created_at": meta.get("created_at", time.time())}
        tmp = path / f".{META}.tmp"
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
        tmp.replace(path / META)

    def read_meta(self, path: Path) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((path / META).read_text())
        return data

    def versions(self, task_id: str) -> list[int]:
        d = self.task_dir(task_id)
        if not d.is_dir():
            return []
        out = []
        for child in d.iterdir():
            if child.name.startswith("v") and child.name[1:].isdigit() and (child / META).exists():
                out.append(int(child.name[1:]))
        return sorted(out)

    def prune(self, task_id: str, keep: int, protect: set[int] | None = None) -> list[int]:
        """Delete all but the newest `keep` versions (and any in `protect`)."""
        versions = self.versions(task_id)
        doomed = [v for v in versions[:-keep] if v not in (protect or set())] if keep else versions
        for v in doomed:
            shutil.rmtree(self.version_dir(task_id, v))
        return doomed
