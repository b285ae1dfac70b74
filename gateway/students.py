"""The students the gateway can call: one backend per (task, version), built on demand.

The embedded engine loads a registered student in-process (transformers, in a worker
thread); the vLLM engine serves the student's LoRA adapter from a vLLM server over its
OpenAI API. Backends for versions no longer routed to are closed on the next refresh.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from gateway.config import Config, EmbeddedEngineConfig, VLLMEngineConfig
from gateway.copy_slots import CopySlots, SlotLeak, Slots
from gateway.exemplars import Exemplars
from gateway.privacy.scrub import ScrubConfig, pseudonymize, reidentify
from gateway.registry import Registry
from gateway.streams import chunks_from_response
from gateway.upstream.base import Backend, Endpoint, Loadable, UpstreamFailure
from gateway.upstream.embedded_student import EmbeddedStudentBackend
from gateway.upstream.vllm_student import VLLMStudentBackend, tool_tags_are_tokens

log = logging.getLogger("slimgate.students")


StudentFactory = Callable[[str, int], Backend]


class StudentAsTrained:
    """A student asked the way it was trained, its answer given back in the request's terms.

    Three rewrites: PII replaced by the placeholders its training data had (`<EMAIL_1>`;
    without this a student that learnt to copy the placeholder would answer with it where
    the teacher copied the address), the worked examples it was trained with added before
    the last user turn (`gateway/exemplars.py`), then the task's copy slots (`<V1>`: ids,
    dates, names its answers copy). The first and last are undone on the answer, in reverse.
    An answer holding a slot that cannot be restored never reaches a client: it fails, and
    the teacher answers.
    """

    def __init__(self, inner: Backend, cfg: ScrubConfig | None,
                 slots: CopySlots | None = None,
                 exemplars: Exemplars | Path | None = None) -> None:
        """`exemplars`: the bank, or the student's directory holding it, read and indexed
        on first use in a worker thread (a few thousand exchanges take a second or two:
        never on the event loop)."""
        self.inner, self.name, self._cfg, self._slots = inner, inner.name, cfg, slots
        self._exemplars = exemplars
        self._indexing = asyncio.Lock()

    async def _bank(self) -> Exemplars | None:
        if isinstance(self._exemplars, Path):
            async with self._indexing:
                if isinstance(self._exemplars, Path):
                    self._exemplars = await asyncio.to_thread(Exemplars.load, self._exemplars)
        return self._exemplars

    async def load(self) -> None:
        if isinstance(self.inner, Loadable):
            await self.inner.load()

    async def complete(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        send, originals = pseudonymize(body, self._cfg) if self._cfg else (body, {})
        bank = await self._bank() if self._exemplars is not None else None
        if bank is not None:  # milliseconds of Python over a large bank: off the event loop
            send = await asyncio.to_thread(bank.add_to, send)
        slots = Slots(self._slots, send) if self._slots else None
        if slots:
            send = slots.delex_request(send)
        resp = await self.inner.complete(endpoint, send)
        for choice in resp.get("choices") or ():
            message = choice.get("message")
            if not isinstance(message, dict):
                continue
            if slots:
                try:
                    message = slots.restore_message(message)
                except SlotLeak as e:
                    raise UpstreamFailure("server", f"student '{self.name}': {e}") from None
            choice["message"] = reidentify(message, originals) if originals else message
        return resp

    async def stream(
        self, endpoint: Endpoint, body: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        for chunk in chunks_from_response(await self.complete(endpoint, body)):
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


def student_copy_slots(meta: dict[str, Any]) -> CopySlots | None:
    """The copy slots a student was trained with, from its slimgate.json (None: none)."""
    data = meta.get("copy_slots")
    if not isinstance(data, dict) or not data.get("enabled", True):
        return None
    return CopySlots.from_dict(data)


class StudentPool:
    def __init__(
        self, config: Config, session: aiohttp.ClientSession,
        factory: StudentFactory | None = None,
        load_student: Callable[[str], Any] | None = None,
    ) -> None:
        self._config = config
        self._session = session
        self._backends: dict[tuple[str, int], Backend] = {}
        self._build = factory or self._from_registry  # tests and embedders may supply their own
        self._load_student = load_student  # the embedded engine's model loader (from the CLI)

    def get(self, task: str, version: int) -> Backend | None:
        """The backend for a student, built on first use; None if it cannot be."""
        key = (task, version)
        backend = self._backends.get(key)
        if backend is None:
            try:
                backend = self._build(task, version)
            except Exception as e:
                log.error("student %s v%d cannot be served: %s", task, version, e)
                return None
            kinds = self._config.distill.scrub_kinds
            # Students learnt from scrubbed (and delexicalized) data: serve them so.
            scrub = (ScrubConfig(kinds=frozenset(kinds) if kinds is not None else None)
                     if kinds is None or kinds else None)
            directory, meta = self._on_disk(task, version)
            slots = student_copy_slots(meta)
            exemplars = directory if directory and meta.get("exemplars") else None
            if scrub is not None or slots is not None or exemplars is not None:
                backend = StudentAsTrained(backend, scrub, slots, exemplars)
            self._backends[key] = backend
        return backend

    def _on_disk(self, task: str, version: int) -> tuple[Path | None, dict[str, Any]]:
        """The student's directory and slimgate.json ((None, {}) for a student from a
        factory, or none on disk: nothing to restore, no worked examples)."""
        try:
            path = Registry(self._config.distill.students_dir).version_dir(task, version)
            meta = json.loads((path / "slimgate.json").read_text())
        except (OSError, ValueError):
            return None, {}
        return (path, meta) if isinstance(meta, dict) else (None, {})

    def _from_registry(self, task: str, version: int) -> Backend:
        cfg = self._config.students
        # The registry checks the task id and confines the path to the students directory.
        path = Registry(self._config.distill.students_dir).version_dir(task, version)
        if not (path / "slimgate.json").exists():
            raise FileNotFoundError(f"{path} is not a complete student (no slimgate.json)")
        name = f"{task}-v{version}"
        engine = cfg.engine
        # vLLM serves LoRA adapters over its base model; every other kind of student (a
        # scratch model, an encoder) stays embedded, with the embedded defaults.
        if isinstance(engine, VLLMEngineConfig) and (path / "adapter_config.json").exists():
            remote_root = engine.adapters_dir or self._config.distill.students_dir
            key = os.environ.get(engine.api_key_env) if engine.api_key_env else None
            return VLLMStudentBackend(
                name, engine.base_url, self._session, adapter_name=name,
                adapter_path=f"{remote_root.rstrip('/')}/{task}/v{version}", api_key=key,
                timeout_s=cfg.timeout_s, constrained=engine.constrained,
                tag_tokens=tool_tags_are_tokens(path),
            )
        if isinstance(engine, VLLMEngineConfig):
            engine = EmbeddedEngineConfig(constrained=engine.constrained)
        if self._load_student is None:
            raise RuntimeError("no student loader: embedded students are served by "
                               "`slimgate serve` (create_app(load_student=...))")
        return EmbeddedStudentBackend(
            name, str(path), load_model=self._load_student, max_batch=engine.max_batch,
            batch_wait_ms=engine.batch_wait_ms, timeout_s=cfg.timeout_s,
            torch_threads=engine.torch_threads, constrained=engine.constrained,
        )

    async def retain(self, wanted: set[tuple[str, int]]) -> None:
        """Close the backends of students that are no longer routed to."""
        for key in [k for k in self._backends if k not in wanted]:
            backend = self._backends.pop(key)
            await backend.aclose()

    async def aclose(self) -> None:
        await self.retain(set())
