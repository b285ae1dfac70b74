"""`slimgate students export`: a registered student as a directory that needs no slimgate.

Which version (the one in play, else the best, else the newest), whether it may leave (it
passed its gate, or `force`), and the writing: a generative student's weights in Hugging Face
format (a LoRA adapter as an adapter, or merged into its base with `merge`), an encoder's
through `distill.export_encoder`; then tokenizer, chat template, copy-slot recipe and the
model card (`distill.model_card`). Written beside `out` and renamed into place when whole.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.model_card import EXEMPLARS, PROVENANCE, RECIPE, heldout_text, model_card
from gateway.config import Config
from gateway.registry import META, Registry, RegistryError
from gateway.store.catalog import StudentRecord, TaskRecord, best_student, get_task, list_students
from gateway.store.db import Connection, connect
from gateway.store.stages import stage_changes
from policies.stages import CLIENT_STAGES

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


class ExportError(ValueError):
    """Why a student cannot be exported (unknown task or version, refused, files missing)."""


@dataclass
class Exported:
    out: Path
    task: TaskRecord
    student: StudentRecord
    kind: str  # generative | encoder
    weights: str  # "full model" | "LoRA adapter" | "merged" | "encoder and heads"
    forced_past: str | None = None  # the gate's refusal that `force` overrode
    notes: list[str] = field(default_factory=list)


def choose_student(con: Connection, task_id: str, version: int | None
                   ) -> tuple[TaskRecord, StudentRecord]:
    """The task and the student to export: `version`, else the one the task shadows or
    serves, else the newest that passed (or nearly passed), else the newest trained."""
    task = get_task(con, task_id)
    if task is None:
        raise ExportError(f"task '{task_id}' does not exist (see `slimgate tasks`)")
    students = list_students(con, task_id)
    versions = ", ".join(f"v{s.version}" for s in students) or "none"
    if version is not None:
        student = next((s for s in students if s.version == version), None)
        if student is None:
            raise ExportError(f"task '{task_id}' has no student v{version} (its students: "
                              f"{versions})")
    else:
        in_play = next((s for s in students if s.version == task.student_version), None)
        trained = [s for s in students if s.status not in ("error", "pruned")]
        student = in_play or best_student(con, task_id) or (trained[-1] if trained else None)
        if student is None:
            raise ExportError(f"task '{task_id}' has no trained student (its students: "
                              f"{versions}); run `slimgate distill` first")
    if student.status == "error":
        raise ExportError(f"student v{student.version} of task '{task_id}' failed in "
                          f"training ({student.metrics.get('error', 'no files')}): nothing "
                          "to export")
    if student.status == "pruned":
        raise ExportError(f"student v{student.version} of task '{task_id}' was pruned from "
                          "disk (`slimgate prune`)")
    return task, student


def gate_refusal(con: Connection, task: TaskRecord, student: StudentRecord) -> str | None:
    """Why this student never passed its gate, or None if it did: its held-out verdict was
    "passed" (or the gate promoted it on live evidence since), or it reached canary or
    primary (served clients) before it was rolled back."""
    if student.status == "passed":
        return None
    if any(c.version == student.version and c.to_stage in CLIENT_STAGES
           for c in stage_changes(con, task.id, limit=1_000_000)):
        return None
    why = {"near": "it only nearly passed its held-out gate (upper bound at the bar, lower "
                   "bound below) and shadow has not proven it on live traffic",
           "failed": "it failed its held-out gate",
           "rolled_back": "it was rolled back before it passed its gate"}.get(
        student.status, f"its status is {student.status!r}")
    return (f"student v{student.version} of task '{task.id}' never passed its gate: {why} "
            f"({heldout_text(student.metrics)})")


def _fresh_out(out: Path) -> Path:
    """The partial directory to write into; `out` must not exist or be an empty directory."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} already exists and is not an empty directory; choose "
                          "another --out")
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.mkdir(mode=0o700)  # it holds what the student learnt from traffic, as the registry
    return partial


def export_student(config: Config, task_id: str, out: str | Path, *, version: int | None = None,
                   merge: bool = False, force: bool = False) -> Exported:
    """Write task `task_id`'s student into `out`; raises ExportError with the reason."""
    con = connect(config.store)
    try:
        task, student = choose_student(con, task_id, version)
        refusal = gate_refusal(con, task, student)
    finally:
        con.close()
    if refusal and not force:
        raise ExportError(f"{refusal}. Add --force to export it anyway.")
    try:
        src = Registry(config.distill.students_dir).version_dir(task.id, student.version)
    except RegistryError as e:
        raise ExportError(str(e)) from None
    if not (src / META).exists():
        raise ExportError(f"student v{student.version} of task '{task.id}' is not on disk "
                          f"({src} has no {META})")
    meta = json.loads((src / META).read_text(encoding="utf-8"))
    out = Path(out).resolve()
    partial = _fresh_out(out)
    try:
        if meta.get("kind") == "encoder":
            from distill.export_encoder import write_encoder

            done = Exported(out, task, student, "encoder", "encoder and heads")
            write_encoder(src, partial)
            if merge:
                done.notes.append("--merge: an encoder export always holds the whole encoder")
        else:
            done = Exported(out, task, student, "generative", _write_generative(src, partial,
                                                                                merge))
            if merge and done.weights == "full model":
                done.notes.append("--merge: this student is a whole model, nothing to merge")
        done.forced_past = refusal
        _write_common(src, partial, meta, done)
        if out.exists():
            out.rmdir()  # empty: _fresh_out checked
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return done


def _copy_files(src: Path, dst: Path, skip: tuple[str, ...]) -> None:
    for f in sorted(src.iterdir()):
        if f.is_file() and f.name != META and not f.name.startswith(".") and f.name not in skip:
            shutil.copy2(f, dst / f.name)


def _write_generative(src: Path, dst: Path, merge: bool) -> str:
    """Weights and tokenizer; returns what the weights are."""
    adapter = src / "adapter_config.json"
    if adapter.exists() and not merge:
        _copy_files(src, dst, ())
        return "LoRA adapter"
    if adapter.exists():
        _copy_files(src, dst, ADAPTER_FILES)
        _merge_adapter(src, dst, json.loads(adapter.read_text())["base_model_name_or_path"])
    else:
        _copy_files(src, dst, ())
    _greedy_generation_config(dst)
    return "merged" if adapter.exists() else "full model"


def _merge_adapter(src: Path, dst: Path, base_ref: str) -> None:
    """The adapter merged into its base (which must be on this machine), saved whole."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from distill.student import quiet_progress_bars

    with quiet_progress_bars():
        try:
            base = AutoModelForCausalLM.from_pretrained(base_ref, dtype="auto",
                                                        local_files_only=True)
        except OSError as e:
            raise ExportError(f"--merge needs the adapter's base model {base_ref!r} on this "
                              f"machine ({type(e).__name__}); export without --merge to get "
                              "the adapter alone") from None
        PeftModel.from_pretrained(base, src).merge_and_unload().save_pretrained(dst)


def _greedy_generation_config(dst: Path) -> None:
    """generation_config.json as slimgate asked the student: greedy, ending at the turn's
    end (a pretrained base may ship sampling settings and another eos)."""
    from transformers import AutoTokenizer, GenerationConfig

    from distill.chat_format import stop_token_ids

    tokenizer = AutoTokenizer.from_pretrained(dst)
    try:
        shipped: Any = GenerationConfig.from_pretrained(dst)
    except OSError:
        shipped = None
    stops = sorted(stop_token_ids(tokenizer, shipped))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    GenerationConfig(do_sample=False, eos_token_id=stops, pad_token_id=pad).save_pretrained(dst)


def _write_common(src: Path, dst: Path, meta: dict[str, Any], done: Exported) -> None:
    """Chat template, copy-slot recipe, provenance and the model card."""

    template = _chat_template(dst)
    if template and not (dst / "chat_template.jinja").exists():
        (dst / "chat_template.jinja").write_text(template, encoding="utf-8")
    slots = meta.get("copy_slots") or {"enabled": False}
    (dst / RECIPE).write_text(json.dumps(slots, indent=1, ensure_ascii=False), encoding="utf-8")
    if slots.get("enabled", True) and done.kind == "generative":
        import gateway.copy_slots

        shutil.copy2(gateway.copy_slots.__file__, dst / "slimgate_copy_slots.py")
    if (src / EXEMPLARS).is_file() and done.kind == "generative":
        import gateway.exemplars

        shutil.copy2(src / EXEMPLARS, dst / EXEMPLARS)
        shutil.copy2(gateway.exemplars.__file__, dst / "slimgate_exemplars.py")
    (dst / PROVENANCE).write_text(json.dumps(meta, indent=1, sort_keys=True, default=str),
                                  encoding="utf-8")
    (dst / "README.md").write_text(model_card(done, meta, dst, exported_at=time.time()),
                                   encoding="utf-8")


def _chat_template(directory: Path) -> str | None:
    """The chat template the tokenizer in `directory` carries (the one training used)."""
    config = directory / "tokenizer_config.json"
    if (directory / "chat_template.jinja").exists():
        return (directory / "chat_template.jinja").read_text(encoding="utf-8")
    if config.exists():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        return template if isinstance(template, str) else None
    return None
