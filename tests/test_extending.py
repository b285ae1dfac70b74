"""docs/architecture.md's "Extending slimgate", held to the code.

Every file and name the guide gives exists; every stage of `policies/stages.py` is known to
the gate, the router, the operator's overrides and the report, and every student kind of
`policies/student_kinds.py` to the config, the loader and the planner — so a stage or kind
added in one place only fails here, naming the places left. A toy kind registered by the
guide's steps is configured, planned, loaded and served; a toy provider written to the
`Backend` protocol gets the pool's retries.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import pytest

from distill import kind_plan, loading
from distill.kind_plan import KindChoice, plan_kinds
from distill.loading import load_student
from gateway.admin import overrides
from gateway.config import ConfigError, parse_config
from gateway.report.html import STAGE_COLOURS
from gateway.report.terminal import STAGE_STYLES
from gateway.store.catalog import StudentRecord, TaskRecord, add_student, get_task, upsert_task
from gateway.store.db import connect
from gateway.upstream.base import Endpoint, Loadable, UpstreamFailure
from gateway.upstream.embedded_student import EmbeddedStudentBackend, GrammarDecoding
from gateway.upstream.pool import Upstreams
from policies import student_kinds
from policies.gate import Evidence, TaskState, decide
from policies.router import route, step_share
from policies.settings import PolicyConfig
from policies.stages import CLIENT_STAGES, POOLED_STAGES, SERVING_STAGES, STAGES, Stage
from policies.student_kinds import CHEAP_KINDS, DEFAULT_KIND, STUDENT_KINDS, StudentKind

ROOT = Path(__file__).resolve().parent.parent
STEPS = [5, 25, 50]


def guide() -> str:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    start = text.index("## Extending slimgate")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def defined_names(path: Path) -> set[str]:
    """The names a module defines at its top level (functions, classes, assignments)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def steps(text: str) -> list[str]:
    """The guide's list items and paragraphs, each as one string."""
    return [" ".join(block.split()) for block in re.split(r"\n(?=\s*(?:-|\d+\.) )|\n\n", text)]


def guide_gaps(text: str) -> list[str]:
    """What the guide names that the code lacks: files; `file` `NAME` pairs whose file does
    not define NAME; code names (with a capital or an underscore) that no file named in the
    same step holds."""
    gaps = []
    for path in sorted(set(re.findall(r"`((?:gateway|distill|policies|tests)/[\w/.<>]*)`",
                                      text))):
        if "<" not in path and not (ROOT / path).exists():
            gaps.append(f"{path} does not exist")
    for path, name in re.findall(r"`([\w/]+\.py)` `(\w+)`", text):
        if (ROOT / path).exists() and name not in defined_names(ROOT / path):
            gaps.append(f"{path} defines no {name}")
    for step in steps(text):
        files = [ROOT / p for p in re.findall(r"`([\w/]+\.py)`", step) if (ROOT / p).exists()]
        names = {n for n in re.findall(r"`([A-Za-z_]\w*)`", step)
                 if "_" in n or not n.islower()}
        for name in sorted(names):
            if files and not any(re.search(rf"\b{name}\b", f.read_text(encoding="utf-8"))
                                 for f in files):
                gaps.append(f"no file of the step holds {name}: {step[:60]}")
    return gaps


def test_the_guide_names_only_files_and_names_that_exist() -> None:
    text = guide()
    assert len(re.findall(r"`([\w/]+\.py)` `(\w+)`", text)) >= 20  # the check reads the guide
    assert guide_gaps(text) == []


def test_the_guide_check_catches_a_renamed_file_or_name() -> None:
    stale = ("1. `distill/shape.py`, `distill/<kind>.py` and `policies/stages.py` `SERVING_STAGE`"
             "\n2. `distill/loading.py`: its entry in `KIND_LOADERS` (not `student_kind`)")
    gaps = guide_gaps(stale)
    assert gaps[:2] == ["distill/shape.py does not exist",
                        "policies/stages.py defines no SERVING_STAGE"]
    assert [g.split(":")[0] for g in gaps[2:]] == ["no file of the step holds SERVING_STAGE",
                                                   "no file of the step holds KIND_LOADERS"]


# ---- stages -------------------------------------------------------------------------------

GOOD = Evidence(heldout_n=100, heldout_agree=99, live_n=120, live_agree=119,
                live_prefix_agree=(50, 99))


def gate_walk() -> list[str]:
    """The stages the gate takes a good student through, from the first, in order."""
    policy = PolicyConfig.model_validate({"canary_steps": STEPS}).for_task("t")
    now, state = 1000.0, TaskState(STAGES[0], None, 0.0, 3, True)
    seen = [state.stage]
    for _ in range(20):
        v = decide(state, GOOD, policy, now)
        if v.action != "promote":
            break
        if v.to_stage != seen[-1]:
            seen.append(v.to_stage)
        state = TaskState(v.to_stage, v.to_step, now, 3, True)
        now += 3600.0
    return seen


def operator_walk(path: Path) -> list[str]:
    """The stages `slimgate promote` takes a task with a passed student through."""
    con = connect(str(path))
    try:
        upsert_task(con, TaskRecord(id="t-a", label="orders", kind="json"))
        add_student(con, StudentRecord(task="t-a", version=1, path="t-a/v1",
                                       base_model="scratch:tiny", status="passed", metrics={}))
        seen = [get_task(con, "t-a").stage]  # type: ignore[union-attr]
        for _ in range(20):
            try:
                change = overrides.promote(con, "t-a", STEPS)
            except overrides.OperatorError:
                break
            if change.to_stage != seen[-1]:
                seen.append(change.to_stage)
        return seen
    finally:
        con.close()


def router_gaps(stage: str) -> list[str]:
    """How `policies.router.route` serves `stage`, against the sets it belongs to."""
    try:
        r = route(stage=stage, share_percent=100.0, sticky_key="k", request_id="r",
                  shadow_rate=1.0, audit_rate=0.0, pin=None, has_student=True)
    except ValueError as e:
        return [f"the router refuses {stage}: {e}"]
    want = ("student" if stage in CLIENT_STAGES else "teacher",
            stage in SERVING_STAGES and stage not in CLIENT_STAGES)
    gaps = [] if (r.serve, r.shadow) == want else [
        f"the router serves {stage} as (serve, shadow) = {(r.serve, r.shadow)}, its sets say "
        f"{want}"]
    if (step_share(stage, 0, STEPS) > 0) != (stage in CLIENT_STAGES):
        gaps.append(f"step_share gives {stage} {step_share(stage, 0, STEPS)}%")
    return gaps


def stage_gaps(stages: Sequence[str], tmp_path: Path) -> list[str]:
    """Where the stages are not known: the gate, the router, the overrides, the report."""
    gaps = []
    for who, walked in (("the gate", gate_walk()),
                        ("the operator's promote", operator_walk(tmp_path / "walk.db"))):
        if walked != list(stages):
            gaps.append(f"{who} walks {walked}, not {list(stages)}")
    for stage in stages:
        gaps += router_gaps(stage)
        gaps += [f"{where} has no {stage}" for where, table in
                 (("STAGE_STYLES", STAGE_STYLES), ("STAGE_COLOURS", STAGE_COLOURS))
                 if stage not in table]
    return gaps


def test_the_stage_list_and_its_sets_agree() -> None:
    assert get_args(Stage) == STAGES
    assert set(CLIENT_STAGES) <= set(SERVING_STAGES) <= set(STAGES)
    assert set(POOLED_STAGES) <= set(SERVING_STAGES)


def test_every_stage_is_known_to_the_gate_router_overrides_and_report(tmp_path: Path) -> None:
    assert stage_gaps(STAGES, tmp_path) == []


def test_a_stage_added_to_the_list_alone_is_caught(tmp_path: Path) -> None:
    stages = (*STAGES[:2], "preview", *STAGES[2:])  # between shadow and canary
    gaps = stage_gaps(stages, tmp_path)
    assert any(g.startswith("the gate walks") for g in gaps)
    assert any(g.startswith("the operator's promote") for g in gaps)
    assert any(g.startswith("the router refuses preview") for g in gaps)
    assert "STAGE_COLOURS has no preview" in gaps


# ---- student kinds ------------------------------------------------------------------------

def kind_gaps(kinds: Sequence[str]) -> list[str]:
    """Where the kinds are not known: the config, the loader, the planner."""
    gaps = [f"LOADERS has no {k}" for k in kinds if k not in loading.LOADERS]
    gaps += [f"CHOOSERS has no {k}" for k in kinds if k not in kind_plan.CHOOSERS]
    try:
        parse_config({"distill": {"student_kinds": list(kinds)}})
    except ConfigError as e:
        gaps.append(f"the config refuses them: {e}")
    planned = [c.kind for c in plan_kinds("label", [], None, encoder=False,
                                          allowed=["nothing"])]
    if planned != list(kinds):
        gaps.append(f"the planner plans {planned}")
    return gaps


def test_the_kind_list_and_its_parts_agree() -> None:
    assert get_args(StudentKind) == STUDENT_KINDS
    assert set(CHEAP_KINDS) <= set(STUDENT_KINDS) and DEFAULT_KIND in STUDENT_KINDS
    assert parse_config({}).distill.student_kinds == list(STUDENT_KINDS)


def test_every_kind_is_known_to_the_config_loader_and_planner() -> None:
    assert kind_gaps(STUDENT_KINDS) == []


def test_a_kind_added_to_the_list_alone_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(student_kinds, "STUDENT_KINDS", (*STUDENT_KINDS, "toy"))
    assert kind_gaps(student_kinds.STUDENT_KINDS) == ["LOADERS has no toy", "CHOOSERS has no toy"]


@dataclass
class ToyGeneration:  # the fields of distill.student.Generation the engine reads
    message: dict[str, Any]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class ToyStudent:
    """A student kind that answers every request with its one label."""

    def __init__(self, label: str) -> None:
        self.label = label

    @classmethod
    def load(cls, path: str) -> ToyStudent:
        return cls(json.loads((Path(path) / "slimgate.json").read_text())["label"])

    def generate(self, requests: list[dict[str, Any]],
                 max_new_tokens: int = 256) -> list[ToyGeneration]:
        return [ToyGeneration({"role": "assistant", "content": self.label}, "stop", 3, 1)
                for _ in requests]


def toy_choice(shape: str, train: list[Any], slots: Any, encoder: bool | None) -> KindChoice:
    return KindChoice("toy", None if shape == "label" else "answers only labels")


async def test_a_toy_kind_registered_as_the_guide_says_is_configured_planned_and_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Steps 1, 3 and 4 of "A student kind": the name (cheapest of all), its loader, its chooser.
    monkeypatch.setattr(student_kinds, "STUDENT_KINDS", ("toy", *STUDENT_KINDS))
    monkeypatch.setitem(loading.LOADERS, "toy", ToyStudent.load)
    monkeypatch.setitem(kind_plan.CHOOSERS, "toy", toy_choice)
    assert kind_gaps(student_kinds.STUDENT_KINDS) == []

    cfg = parse_config({"distill": {"student_kinds": ["toy", "generative"]}})
    assert cfg.distill.student_kinds == ["toy", "generative"]
    with pytest.raises(ConfigError, match="unknown student kind 'toys'"):
        parse_config({"distill": {"student_kinds": ["toys"]}})

    plan = plan_kinds("label", [], None, encoder=False, allowed=cfg.distill.student_kinds)
    assert plan == [KindChoice("toy", None), KindChoice("encoder", "not in distill.student_kinds"),
                    KindChoice("generative", None)]
    assert plan_kinds("text", [], None, encoder=False)[0] == KindChoice(
        "toy", "answers only labels")

    # A registered directory of the kind, as the pipeline writes it, served embedded.
    student = tmp_path / "v1"
    student.mkdir()
    (student / "slimgate.json").write_text(json.dumps({"kind": "toy", "label": "refund"}))
    assert isinstance(load_student(str(student)), ToyStudent)
    backend = EmbeddedStudentBackend("t-v1", str(student), load_model=load_student,
                                     constrained=False)
    assert isinstance(backend, Loadable)
    answer = await backend.complete("chat/completions", {
        "model": "m", "messages": [{"role": "user", "content": "my parcel never came"}]})
    assert answer["choices"][0]["message"]["content"] == "refund"
    await backend.aclose()


class ToyGrammarStudent(ToyStudent):
    constrained = True  # decodes under each request's grammar (`GrammarDecoding`)


async def test_an_engine_without_grammars_turns_them_off_where_a_student_has_them() -> None:
    loaded: list[ToyStudent] = []

    def load(path: str) -> ToyStudent:
        loaded.append(ToyGrammarStudent("x") if path == "grammar" else ToyStudent("x"))
        return loaded[-1]

    for path in ("grammar", "plain"):
        backend = EmbeddedStudentBackend("t-v1", path, load_model=load, constrained=False)
        await backend.load()
    assert isinstance(loaded[0], GrammarDecoding) and loaded[0].constrained is False
    assert not isinstance(loaded[1], GrammarDecoding)


# ---- providers ----------------------------------------------------------------------------

class ToyProvider:
    """A provider client written to the `Backend` protocol: fails once, then answers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    async def complete(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        if self.calls == 1:
            raise UpstreamFailure("server", "toy provider: overloaded", status=503)
        return {"object": "chat.completion", "model": self.name, "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"},
             "finish_reason": "stop"}]}

    async def stream(self, endpoint: Endpoint,
                     body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        yield await self.complete(endpoint, body)

    async def aclose(self) -> None:
        pass


async def test_a_provider_written_to_the_backend_protocol_gets_retries() -> None:
    cfg = parse_config({"models": [{"name": "toy", "provider": "openai",
                                    "base_url": "http://127.0.0.1:9", "backoff_initial_s": 0}]})
    toy = ToyProvider("toy")
    upstreams = Upstreams(cfg, {"toy": toy})
    answer, served = await upstreams.complete(cfg.models[0], "chat/completions",
                                              {"model": "toy", "messages": []})
    assert answer["choices"][0]["message"]["content"] == "hi"
    assert (served.attempts, toy.calls) == (2, 2)
    assert not isinstance(toy, Loadable)  # an optional capability it does not have
