"""Training one candidate of one student kind for a task, and judging it on held-out data.

`prepare` fits the task's copy slots, measures their coverage, delexicalizes its training
data and plans the student kinds (`distill.kind_plan`). `fit_generative` trains a causal LM
candidate (scratch or LoRA), stopping it part-way when it is hopeless; `fit_encoder` trains
the encoder/classifier kind on the raw requests. Each is evaluated as it will serve: the
generative kind through the copy slots, the encoder on the request's own words.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from distill.copying import SlottedStudent, coverage, delexicalize, fit_copy_slots
from distill.curate import Curated, Example
from distill.evaluate import Evaluation, Similarity, TextJudge, evaluate
from distill.kind_plan import KindChoice, Shape, answer_shape, code_answers, plan_kinds
from distill.train import Interrupt
from gateway.config import CandidateConfig, Config
from gateway.copy_slots import CopySlots
from gateway.exemplars import Exemplars, last_user_text
from policies.code_text import code_shape
from policies.schedule import hopeless
from policies.settings import TaskPolicy

log = logging.getLogger("slimgate.distill")
PROBE_EXAMPLES = 32  # held-out examples the part-way check generates for
CHECK_AT = 0.5  # share of the time budget after which a run is checked for hopelessness
# ... and passes over the data it must have made by then: wall time alone misjudges a loaded
# machine (bench, 2026-11-30, load 10-12 on 2 cores: intent_router was stopped after 47
# steps, 1.75 epochs, answering valid JSON with the wrong intents). The labels of the same
# run reached agreement 1.00 within 6-7 epochs; 4 is a judgement, not a fit.
CHECK_EPOCHS = 4.0
BASES_DIR = ".bases"  # under distill.students_dir: GGUF candidates converted for training


@dataclass
class Prepared:
    """A task made ready for training: what every candidate of every kind shares."""

    shape: Shape
    slots: CopySlots | None
    train: list[Example]  # as the student sees them (delexicalized when slots apply)
    plan: list[KindChoice]
    # The training examples as the client wrote them, for the encoder kind: it copies by
    # pointing at the request's own words, and a `<V3>` hides whether they name a city or an
    # artist (SNIPS through copy slots: 0.205 held-out agreement; the raw request: 0.395,
    # `bench/toolcall_misses.py`, 2026-12-06).
    raw_train: list[Example] = field(default_factory=list)
    unslotted: str | None = None  # why a candidate's slots were set aside (`for_candidate`)
    # The worked examples a pretrained candidate is trained and asked with (`for_candidate`)
    exemplars: Exemplars | None = None
    # Banks by k, built once for S4's plan and the run it plans (a few seconds on thousands)
    banks: dict[int, Exemplars | None] = field(default_factory=dict, repr=False, compare=False)

    def slots_meta(self) -> dict[str, Any]:
        """`copy_slots` for slimgate.json: the proposer's state and its measured coverage."""
        if self.slots is None:
            return {"enabled": False,
                    "reason": self.unslotted or "the answers copy nothing from the request"}
        return {"enabled": True, **self.slots.as_dict()}

    @property
    def coverage(self) -> float | None:
        return self._heldout("share")

    @property
    def ceiling(self) -> float | None:
        """Share of held-out answers whose copied values the slots capture in full."""
        return self._heldout("answers_whole")

    def _heldout(self, key: str) -> float | None:
        value = (self.slots.coverage.get("heldout") or {}).get(key) if self.slots else None
        return None if value is None else float(value)

    def too_low_for(self, candidate: CandidateConfig, min_agreement: float) -> str | None:
        """Why the copy slots leave `candidate` no chance at the gate, or None.

        A scratch student's vocabulary is the task's own text: a value the slots miss, it
        cannot copy, so the answers it can get right are at most those captured whole. A
        pretrained candidate can copy by itself and is never ruled out here: it is given the
        raw request instead (`for_candidate`).
        """
        if not candidate.model.startswith("scratch:") or self.ceiling is None:
            return None
        if self.ceiling >= min_agreement:
            return None
        return (f"copy-slot coverage {self.coverage:.2f} leaves {self.ceiling:.2f} of held-out "
                f"answers copyable whole, below the gate's {min_agreement:.2f}")

    def for_candidate(self, candidate: CandidateConfig, min_agreement: float,
                      exemplars: int = 0) -> Prepared:
        """What `candidate` trains on and is asked with. Where the copy slots leave fewer
        held-out answers copyable whole than the gate needs, a pretrained candidate learns
        and answers the raw request, copying values itself as its pretraining taught it: a
        student trained on `<V1>` never meets the values the slots miss (the gazetteer holds
        every training value), so it cannot copy them (SNIPS as JSON: 0.58 of held-out
        answers whole, a certain fail). Scratch candidates keep the slots (`too_low_for`).
        A pretrained candidate of a task whose answers are code (SQL) is also given its
        `exemplars` nearest training exchanges as worked examples (`gateway.exemplars`)."""
        if candidate.model.startswith("scratch:"):
            return self
        asked = self
        if self.ceiling is not None and self.ceiling < min_agreement:
            asked = replace(self, slots=None, train=self.raw_train, unslotted=(
                f"copy-slot coverage {self.coverage:.2f} leaves {self.ceiling:.2f} of held-out "
                f"answers copyable whole, below the gate's {min_agreement:.2f}: the pretrained "
                "candidate copies from the raw request itself"))
        return asked.with_exemplars(exemplars)

    def with_exemplars(self, k: int) -> Prepared:
        """Training examples each with its `k` nearest other training exchanges as worked
        examples, then copy-slotted as a request is at serving (`gateway.students`): for
        answers that are code (EXEMPLAR_SHAPES), all of them content. Unchanged otherwise,
        or for k = 0."""
        if k not in self.banks:
            self.banks[k] = exemplar_bank(self.raw_train, self.shape, k)
        bank = self.banks[k]
        if bank is None:
            return self
        shown = [replace(ex, messages=bank.add_to({"messages": ex.messages})["messages"])
                 for ex in self.raw_train]
        train = [delexicalize(ex, self.slots) for ex in shown] if self.slots else shown
        return replace(self, train=train, exemplars=bank)


# Measured on text-to-SQL (docs/students.md). Not free text: unmeasured, and there a worked
# example is another conversation's reply, which a student could repeat to this one. Not
# JSON: on SNIPS as JSON two examples halved a 600 s run's steps (111 against 251) and
# lowered held-out agreement (0.08 against 0.22; `bench/pretrained_run.py
# --exemplars-anywhere`): with 39 optional slots the nearest utterance seldom has this
# one's keys (0.24 of them).
EXEMPLAR_SHAPES = ("code",)
# Worked examples are given where they show the answer's shape: where a training exchange's
# nearest other exchange has an answer of the same shape, literals aside (`code_shape`), for
# at least this share of them. Measured on text2sql-data, one 600 s SmolLM2 run each:
# restaurants 0.76 and geography 0.43, where one example raised held-out agreement (0.38 ->
# 0.67-0.71, 0.38 -> 0.51); WikiSQL 0.10, a new table almost every request, where it did not
# (0.56-0.60 -> 0.51). 0.25 lies between; a judgement, not a fit (scholar 0.45, advising
# 0.50 and ATIS 0.32 would be given them, unmeasured).
MIN_SAME_SHAPE = 0.25
SHAPE_SAMPLE = 200  # training exchanges the share is measured on (each a lookup)


def exemplar_bank(train: list[Example], shape: str, k: int) -> Exemplars | None:
    """The worked examples of a task whose answers are code, or None: k = 0, another answer
    shape, an answer that is not plain content (a tool call, no text), or nearest exchanges
    that seldom show the answer's shape (`same_shape` under MIN_SAME_SHAPE)."""
    if k <= 0 or shape not in EXEMPLAR_SHAPES or not train:
        return None
    shots = []
    for ex in train:
        text, answer = last_user_text(ex.messages), ex.answer.get("content")
        if text is None or not isinstance(answer, str) or ex.answer.get("tool_calls"):
            return None
        shots.append((text, answer))
    bank = Exemplars(shots, k)
    share = same_shape(bank)
    log.info("worked examples: the nearest exchange shows the answer's shape for %.2f of "
             "training exchanges (%s)", share,
             "given" if share >= MIN_SAME_SHAPE else f"under {MIN_SAME_SHAPE}: not given")
    return bank if share >= MIN_SAME_SHAPE else None


def same_shape(bank: Exemplars) -> float:
    """The share of the bank's exchanges (an even sample of SHAPE_SAMPLE) whose nearest other
    exchange has an answer of the same code shape."""
    step = max(1, len(bank) // SHAPE_SAMPLE)
    picked = range(0, len(bank), step)
    same = 0
    for i in picked:
        question, answer = bank.shots[i]
        near = bank.nearest(question, 1)
        same += bool(near) and code_shape(bank.shots[near[0]][1]) == code_shape(answer)
    return same / len(picked)


def prepare(task_kind: str, curated: Curated, max_train: int,
            encoder: bool | None = None, kinds: list[str] | None = None) -> Prepared:
    """Copy slots fitted on the training split, coverage measured on both splits."""
    raw = curated.train[-max_train:]
    slots = fit_copy_slots(raw)
    train = raw
    if slots is not None:
        slots.coverage.update(train=coverage(raw, slots), heldout=coverage(curated.heldout, slots))
        train = [delexicalize(ex, slots) for ex in raw]
    shape = answer_shape(task_kind, slots)
    if shape in ("label", "text") and code_answers(raw):  # queries, however short
        shape = "code"
    plan = plan_kinds(shape, raw, slots, encoder=encoder, allowed=kinds)
    if shape == "label" and (plan[0].reason or "").startswith("cannot express"):
        # Short answers that are neither a set of labels nor copied from the request (each
        # request its own answer: facts the request does not hold) are short free text.
        shape = "text"
    return Prepared(shape, slots, train, plan, raw_train=raw)


def _as_served(student: Any, prep: Prepared) -> Any:
    """The student asked as the gateway asks it: worked examples added, then copy slots."""
    served = SlottedStudent(student, prep.slots) if prep.slots is not None else student
    return ExemplarStudent(served, prep.exemplars) if prep.exemplars is not None else served


class ExemplarStudent:
    """Any student asked with its worked examples before each request's last user turn."""

    def __init__(self, inner: Any, exemplars: Exemplars) -> None:
        self.inner, self.exemplars = inner, exemplars

    def __getattr__(self, name: str) -> Any:  # leaks and the like, counted by the inner one
        return getattr(self.inner, name)

    def generate(self, requests: list[dict[str, Any]], max_new_tokens: int = 256) -> list[Any]:
        return self.inner.generate([self.exemplars.add_to(r) for r in requests],
                                   max_new_tokens=max_new_tokens)


def judge(student: Any, prep: Prepared, heldout: list[Example], task_kind: str,
          policy: TaskPolicy, cfg: Config, max_new: int,
          similarity: Similarity | None = None,
          text_judge: TextJudge | None = None) -> Evaluation:
    return evaluate(_as_served(student, prep), heldout, task_kind, confidence=policy.confidence,
                    text_threshold=cfg.distill.text_similarity, max_tokens=max_new,
                    similarity=similarity, text_judge=text_judge,
                    stop_below=policy.min_agreement)


def fit_generative(
    cfg: Config, prep: Prepared, heldout: list[Example], task_kind: str, policy: TaskPolicy,
    candidate: CandidateConfig, out_dir: Path, *, max_new: int, progress: bool, seed: int = 0,
    similarity: Similarity | None = None, interrupt: Interrupt | None = None,
    text_judge: TextJudge | None = None, warm_from: Path | None = None,
) -> tuple[dict[str, Any], Evaluation]:
    """Train and evaluate one generative candidate, from the LoRA adapter `warm_from` when
    given (`distill.warm_start`); (training report, evaluation). The
    part-way check compares free text by `similarity`, the gate's evaluation by `text_judge`
    where given (its calls cost: one evaluation's worth). Raises `distill.train.Interrupted`
    when `interrupt` stops it (nothing is evaluated)."""
    from distill.heap import release_heap
    from distill.student import Student
    from distill.train import train_student

    probe = random.Random(seed).sample(heldout, min(PROBE_EXAMPLES, len(heldout)))

    def check(model: Any, tokenizer: Any) -> bool:
        if not probe:
            return False
        student = Student(model, tokenizer, device=str(model.device))  # cuda when training there
        ev = judge(student, prep, probe, task_kind, policy, cfg, max_new, similarity)
        n = ev.summary["n"]
        valid = round(ev.summary["valid_rate"] * n)
        stop = hopeless(ev.summary["agree"], valid, n, policy.min_agreement, policy.confidence)
        log.info("part-way check: %d/%d held-out agree, %d valid%s", ev.summary["agree"], n,
                 valid, ", hopeless: stopping" if stop else "")
        return stop

    report = train_student([ex.as_training() for ex in prep.train], base_model=candidate.model,
                           method=candidate.method, cfg=cfg.distill.training, out_dir=out_dir,
                           progress=progress, checkpoint=check, checkpoint_at=CHECK_AT,
                           checkpoint_epochs=CHECK_EPOCHS, seed=seed, interrupt=interrupt,
                           bases_dir=Path(cfg.distill.students_dir) / BASES_DIR,
                           init_adapter=warm_from)
    release_heap()  # training's peak, before the student is loaded to be judged
    student = Student.load(str(out_dir))
    ev = judge(student, prep, heldout, task_kind, policy, cfg, max_new, similarity, text_judge)
    return report.as_dict(), ev


def fit_encoder(
    cfg: Config, prep: Prepared, heldout: list[Example], task_kind: str, policy: TaskPolicy,
    out_dir: Path, *, max_new: int, seed: int = 0, similarity: Similarity | None = None,
    text_judge: TextJudge | None = None,
) -> tuple[dict[str, Any], Evaluation]:
    """Train and evaluate the encoder/classifier student kind; (its info, evaluation). It
    learns and answers the raw requests: no copy slots (`Prepared.raw_train`)."""
    from distill.encoder_student import EncoderStudent, train_encoder

    info = train_encoder(prep.raw_train, out_dir,
                         budget_s=cfg.distill.training.time_budget_s, seed=seed)
    student = EncoderStudent.load(out_dir)
    unslotted = replace(prep, slots=None)
    return info, judge(student, unslotted, heldout, task_kind, policy, cfg, max_new, similarity,
                       text_judge)
