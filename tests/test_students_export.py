"""`slimgate students export`: a tiny trained student written out loads with transformers (a
whole model, an adapter, an adapter merged) and answers as the gateway's student does; the
model card says what a reader needs; an unpassed student is refused unless forced."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from gateway.cli import main
from gateway.config import Config, TrainingConfig, load_config
from gateway.registry import Registry
from gateway.store.catalog import TaskRecord
from gateway.store.db import connect
from tests.helpers_students import (
    ASK,
    CITIES,
    HELD_OUT_CITIES,
    NOTIFY,
    SET_LEVEL,
    SIGNATURE,
    TinyLora,
    register,
    request,
    slotted,
    tool_example,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "students.md"
def doc_snippet(marker: str) -> str:
    """The python block after `<!-- marker -->` in docs/students.md."""
    text = DOCS.read_text(encoding="utf-8")
    after = text.split(f"<!-- {marker} -->", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None, tiny_lora: TinyLora,
          ) -> tuple[Path, Config, Path]:
    """A store with task t-full (a scratch student: v1 passed, v2 failed) and t-lora (the
    session's LoRA adapter over a tiny local Llama), each trained for a few steps."""
    from distill.train import train_student

    tmp = tmp_path_factory.mktemp("export")
    path = tmp / "config.toml"
    path.write_text(f'[store]\npath = "{tmp / "store.db"}"\n\n'
                    f'[distill]\nstudents_dir = "{tmp / "students"}"\nscrub_kinds = []\n')
    cfg = load_config(str(path))
    data = [slotted(i) for i in range(24)]
    # 12 steps: enough for answers that differ by prompt (4 give one answer to every prompt)
    train_student(data, base_model="scratch:tiny", out_dir=tmp / "full", progress=False,
                  cfg=TrainingConfig(max_steps=12, batch_size=8))
    full = TaskRecord(id="t-full", label="order status", kind="tool_call",
                      info={"signature": SIGNATURE})
    slots = {"enabled": True, "gazetteer": ["Lisbon"], "numeric_fields": [], "patterns": True,
             "coverage": {}}
    scratch_meta = {"kind": "generative", "base_model": "scratch:tiny", "copy_slots": slots,
                    "candidate": {"model": "scratch:tiny", "licence": "apache-2.0"}}
    register(cfg, full, 1, tmp / "full", "passed", scratch_meta)
    register(cfg, full, 2, tmp / "full", "failed", scratch_meta)
    lora = TaskRecord(id="t-lora", label="levels", kind="tool_call",
                      info={"signature": SIGNATURE})
    register(cfg, lora, 1, tiny_lora.adapter, "passed",
             {"kind": "generative", "base_model": str(tiny_lora.base),
              "copy_slots": {"enabled": False, "reason": "the answers copy nothing"},
              "candidate": {"model": str(tiny_lora.base), "licence": "mit"}})
    return path, cfg, tmp


def served_answer(cfg: Config, task: str, body: dict[str, Any]) -> dict[str, Any]:
    """The gateway's own student answer: the student pool's embedded backend."""
    import aiohttp

    from distill.loading import load_student
    from gateway.students import StudentPool

    async def ask() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            pool = StudentPool(cfg, session, load_student=load_student)
            backend = pool.get(task, 1)
            assert backend is not None
            try:
                return await backend.complete("chat/completions", body)
            finally:
                await pool.aclose()

    return asyncio.run(ask())["choices"][0]["message"]


def run_snippet(snippet: str, export: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    exec(compile(snippet.replace("EXPORT_DIR", str(export)), "snippet", "exec"), {})
    return capsys.readouterr().out


def export(setup: tuple[Path, Config, Path], *args: str) -> int:
    return main(["students", "export", *args, "--config", str(setup[0])])


def test_whole_model_export_loads_with_transformers_and_answers_as_served(
        setup: tuple[Path, Config, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from distill.model_card import GENERATIVE_SNIPPET

    out = setup[2] / "out-full"
    assert export(setup, "t-full", "--out", str(out)) == 0
    assert "exported t-full v1" in capsys.readouterr().out  # v1: the one that passed
    for name in ("model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja",
                 "generation_config.json", "copy_slots.json", "README.md"):
        assert (out / name).exists(), name
    snippet = doc_snippet("generative-snippet")
    assert snippet == GENERATIVE_SNIPPET  # what the model card shows is what the docs show
    printed = run_snippet(snippet, out, capsys)
    served = served_answer(setup[1], "t-full", {**ASK, "max_tokens": 64})
    assert printed.strip() == served["content"]


def test_adapter_export_is_an_adapter_and_merge_writes_plain_weights(
        setup: tuple[Path, Config, Path], tiny_lora: TinyLora,
        capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    served = served_answer(setup[1], "t-lora", {**ASK, "max_tokens": 64})["content"]
    adapter, merged = setup[2] / "out-adapter", setup[2] / "out-merged"
    assert export(setup, "t-lora", "--out", str(adapter)) == 0
    assert (adapter / "adapter_model.safetensors").exists()
    assert not (adapter / "model.safetensors").exists()
    card = (adapter / "README.md").read_text()
    assert "library_name: peft" in card and "AutoPeftModelForCausalLM" in card
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]  # the card's own snippet
    assert run_snippet(snippet, adapter, capsys).strip() == served

    assert export(setup, "t-lora", "--out", str(merged), "--merge") == 0
    assert not (merged / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(merged)
    assert type(model) is LlamaForCausalLM  # plain weights: peft plays no part in loading
    base = AutoModelForCausalLM.from_pretrained(tiny_lora.base)
    moved = [name for name, w in model.state_dict().items()
             if not w.equal(base.state_dict()[name])]
    assert moved, "the merged export holds the base's weights: the adapter was not merged"
    assert run_snippet(doc_snippet("generative-snippet"), merged, capsys).strip() == served


def test_whole_models_are_written_greedy_ending_at_the_turns_end(
        setup: tuple[Path, Config, Path], tmp_path: Path) -> None:
    """A pretrained base may ship sampling settings and its own eos; slimgate asked the
    student greedily and stopped at `<|im_end|>`, and so does the export."""
    from transformers import AutoTokenizer, GenerationConfig

    from distill.export import _greedy_generation_config

    shutil.copytree(setup[2] / "full", tmp_path / "m")
    (tmp_path / "m" / "generation_config.json").write_text(json.dumps(
        {"do_sample": True, "temperature": 0.7, "eos_token_id": 0}))
    _greedy_generation_config(tmp_path / "m")
    config = GenerationConfig.from_pretrained(tmp_path / "m")
    im_end = AutoTokenizer.from_pretrained(tmp_path / "m").convert_tokens_to_ids("<|im_end|>")
    assert config.do_sample is False and im_end in config.eos_token_id


def test_model_card_names_task_base_licence_data_agreement_contract_and_dates(
        setup: tuple[Path, Config, Path], tiny_lora: TinyLora) -> None:
    from distill.chat_format import CHAT_TEMPLATE

    out = setup[2] / "out-card"
    assert export(setup, "t-lora", "--out", str(out)) == 0
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: mit\n")
    for needed in ("levels", "t-lora v1", f"base model: `{tiny_lora.base}`",
                   "24 training examples from 30 distinct requests", "6 held out",
                   "held-out agreement 0.950, 95% bounds [0.834, 0.986] over 40 comparisons",
                   "lower bound ≥ 0.80", "gate: passed", "tools offered: `notify`, `set_level`",
                   "trained: 20", "exported: 20", "personal data scrubbed: email"):
        assert needed in card, needed
    provenance = json.loads((out / "slimgate_student.json").read_text())
    assert provenance["version"] == 1 and provenance["kind"] == "generative"
    assert (out / "chat_template.jinja").read_text() == CHAT_TEMPLATE  # as trained


def test_unpassed_student_is_refused_with_the_reason_unless_forced(
        setup: tuple[Path, Config, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = setup[2] / "out-v2"
    assert export(setup, "t-full", "--version", "2", "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert "v2 of task 't-full' never passed its gate: it failed its held-out gate" in err
    assert "0.950" in err and "--force" in err
    assert not out.exists() and not list(out.parent.glob(".out-v2*"))
    assert export(setup, "t-full", "--version", "2", "--out", str(out), "--force") == 0
    assert "exported despite the gate" in capsys.readouterr().out
    assert "not passed: exported with --force" in (out / "README.md").read_text()


def test_a_near_miss_that_served_clients_passed_its_gate(
        setup: tuple[Path, Config, Path]) -> None:
    from distill.export import gate_refusal
    from gateway.store.catalog import get_task, list_students
    from gateway.store.stages import set_stage

    con = connect(setup[1].store)
    try:
        task = get_task(con, "t-full")
        assert task is not None
        v2 = list_students(con, "t-full")[1]
        v2.status = "near"
        assert "only nearly passed" in str(gate_refusal(con, task, v2))
        set_stage(con, "t-full", "shadow", version=2, actor="policy", reason="near miss")
        assert gate_refusal(con, task, v2) is not None  # shadow serves no client
        set_stage(con, "t-full", "canary", version=2, actor="policy", reason="live passed")
        v2.status = "rolled_back"
        assert gate_refusal(con, task, v2) is None
        set_stage(con, "t-full", "observe", version=1, actor="operator", reason="test")
    finally:
        con.close()


def test_unknown_task_version_or_a_used_directory_is_a_clear_error(
        setup: tuple[Path, Config, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = setup[2] / "out-none"
    assert export(setup, "t-nope", "--out", str(out)) == 1
    assert "task 't-nope' does not exist (see `slimgate tasks`)" in capsys.readouterr().err
    assert export(setup, "t-full", "--version", "9", "--out", str(out)) == 1
    assert "task 't-full' has no student v9 (its students: v1, v2)" in capsys.readouterr().err
    assert export(setup, "../etc", "--out", str(out)) == 1
    assert "does not exist" in capsys.readouterr().err
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert export(setup, "t-full", "--out", str(out)) == 1
    assert "already exists and is not an empty directory" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_copy_slot_recipe_asks_as_the_gateway_does(setup: tuple[Path, Config, Path]) -> None:
    from gateway.copy_slots import CopySlots, Slots

    out = setup[2] / "out-recipe"
    assert export(setup, "t-full", "--out", str(out)) == 0
    recipe = json.loads((out / "copy_slots.json").read_text())
    assert recipe["gazetteer"] == ["Lisbon"]
    shipped = load_module(out / "slimgate_copy_slots.py", "exported_copy_slots")
    request = {"messages": [{"role": "user", "content": "Tell Ana in Lisbon about ORD-1234."}],
               "tools": [SET_LEVEL, NOTIFY]}
    theirs = shipped.Slots(shipped.CopySlots.from_dict(recipe), request)
    ours = Slots(CopySlots.from_dict(recipe), request)
    asked = theirs.delex_request(request)
    assert asked == ours.delex_request(request)
    assert "Lisbon" not in json.dumps(asked) and "<V" in json.dumps(asked)
    answer = {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function",
              "function": {"name": "notify", "arguments": '{"who": "<V1>"}'}}]}
    assert theirs.restore_message(answer) == ours.restore_message(answer)


def test_worked_examples_ship_with_the_student_and_are_added_as_the_gateway_adds_them(
        setup: tuple[Path, Config, Path], tiny_lora: TinyLora) -> None:
    from gateway.exemplars import Exemplars

    bank = Exemplars([("levels for Lisbon", "SELECT 1"), ("notify Ana", "SELECT 2")], k=1)
    task = TaskRecord(id="t-shots", label="queries", kind="text", info={})
    register(setup[1], task, 1, tiny_lora.adapter, "passed",
             {"kind": "generative", "base_model": str(tiny_lora.base),
              "copy_slots": {"enabled": False, "reason": "the answers copy nothing"},
              "exemplars": {"k": 1, "exchanges": 2},
              "candidate": {"model": str(tiny_lora.base), "licence": "mit"}})
    bank.save(Registry(setup[1].distill.students_dir).version_dir("t-shots", 1))
    out = setup[2] / "out-shots"
    assert export(setup, "t-shots", "--out", str(out)) == 0
    shipped = load_module(out / "slimgate_exemplars.py", "exported_exemplars")
    theirs = shipped.Exemplars.from_dict(json.loads((out / "exemplars.json").read_text()))
    request = {"messages": [{"role": "user", "content": "levels for Porto"}]}
    assert theirs.add_to(request) == bank.add_to(request)
    assert theirs.add_to(request)["messages"][0]["content"] == "levels for Lisbon"
    card = (out / "README.md").read_text()
    assert "## Worked examples" in card and "2 exchanges in `exemplars.json`" in card
    # a student without them says so, and ships neither file
    plain = setup[2] / "out-plain"
    assert export(setup, "t-lora", "--out", str(plain)) == 0
    assert not (plain / "exemplars.json").exists()
    assert "None: ask it with the request alone." in (plain / "README.md").read_text()


@pytest.fixture(scope="module")
def encoder_export(setup: tuple[Path, Config, Path]) -> tuple[Path, Path]:
    """An encoder student (one tuned top layer) on weather and timer tool calls, registered
    as task t-enc and exported: (its registry directory, the export)."""
    import random

    from distill.encoder_student import train_encoder
    from distill.encoder_train import EncoderConfig

    rng, tmp = random.Random(1), setup[2]
    info = train_encoder([tool_example(rng, CITIES) for _ in range(80)], tmp / "enc",
                         budget_s=3600,  # epochs end it, not the clock (a loaded machine)
                         seed=0, cfg=EncoderConfig(tune_layers=1, max_epochs=40))
    task = TaskRecord(id="t-enc", label="weather or timer", kind="tool_call",
                      info={"signature": "get_weather,set_timer|"})
    register(setup[1], task, 1, tmp / "enc", "passed", {
        **info, "copy_slots": {"enabled": False, "reason": "the encoder points at the "
                               "request's own words"}})
    assert export(setup, "t-enc", "--out", str(tmp / "out-enc")) == 0
    return Registry(setup[1].distill.students_dir).version_dir("t-enc", 1), tmp / "out-enc"


def without_ids(message: dict[str, Any]) -> dict[str, Any]:
    calls = [{**c, "id": None} for c in message.get("tool_calls") or []]
    return {**message, "tool_calls": calls} if calls else message


def test_encoder_export_is_a_plain_bert_with_heads_and_answers_as_served(
        encoder_export: tuple[Path, Path]) -> None:
    import random

    from safetensors.torch import load_file

    from distill.encoder_heads import base_path
    from distill.encoder_student import EncoderStudent

    src, out = encoder_export
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0\n") and "slimgate_encoder" in card
    assert (out / "encoder.json").exists() and (out / "tokenizer.json").exists()
    tuned = "encoder.layer.5.output.dense.weight"  # the top layer, trained with the heads
    assert not load_file(str(out / "model.safetensors"))[tuned].equal(
        load_file(str(base_path() / "model.safetensors"))[tuned])
    assert all(k.split(".")[0] in ("frame", "start_proj", "end_proj", "start_query",
                                   "end_query") for k in load_file(str(out / "heads.safetensors")))
    rng = random.Random(7)
    asks = [request(tool_example(rng, HELD_OUT_CITIES)) for _ in range(24)]
    asks.append({**asks[0], "tool_choice": {"type": "function",
                                            "function": {"name": "set_timer"}}})
    served = [g.message for g in EncoderStudent.load(src).generate(asks)]
    runtime = load_module(out / "slimgate_encoder.py", "exported_encoder")
    exported = runtime.ExportedEncoder.load(out).answer(asks)
    assert [without_ids(m) for m in exported] == [without_ids(m) for m in served]
    assert served[-1]["tool_calls"][0]["function"]["name"] == "set_timer"


def test_encoder_snippet_from_the_docs_runs_without_slimgate(
        encoder_export: tuple[Path, Path], tmp_path: Path) -> None:
    import subprocess

    from distill.encoder_student import EncoderStudent
    from distill.model_card import ENCODER_SNIPPET

    src, out = encoder_export
    snippet = doc_snippet("encoder-snippet")
    assert snippet == ENCODER_SNIPPET
    lines = len([line for line in snippet.splitlines() if line.strip()])
    assert lines <= 20, f"the documented snippet grew to {lines} lines"
    check = ("\nimport sys\nours = sorted(m for m in sys.modules if m.split('.')[0] in "
             "('distill', 'gateway', 'policies'))\nassert not ours, ours\n")
    done = subprocess.run([sys.executable, "-c", snippet.replace("EXPORT_DIR", str(out)) + check],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
                               "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    ns: dict[str, Any] = {}
    exec(snippet[snippet.index("request = {"):snippet.index("(message,)")], ns)  # its request
    (served,) = EncoderStudent.load(src).generate([ns["request"]])
    assert without_ids(printed) == without_ids(served.message)
    assert printed["tool_calls"][0]["function"]["name"] == "get_weather"
