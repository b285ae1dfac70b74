"""Fine-tuning students: the loss falls, weights move, only the answer is learnt, budgets stop
training, and both save formats (full scratch model, PEFT adapter) come out loadable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.chat_format import IM_END, conversation, render, stop_token_ids
from gateway.config import TrainingConfig
from tests.helpers_students import tool_and_json_examples

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_loss_is_on_the_answer_only_and_training_changes_weights(tmp_path: Path) -> None:
    import torch

    from distill.scratch import build_scratch
    from distill.train import Clock, encode_example, make_trainer

    data = tool_and_json_examples()
    model, tok = build_scratch("tiny", [render(*conversation(ex)) for ex in data])
    rows = [encode_example(ex, tok, stop_token_ids(tok)) for ex in data]
    cfg = TrainingConfig(max_steps=15, batch_size=8, epochs=100)
    trainer = make_trainer(model, tok, rows, cfg=cfg, learning_rate=3e-3, clock=Clock(120),
                           lora=False, output_dir=str(tmp_path))

    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape == batch["labels"].shape
    answers = {render(*conversation(ex)).rsplit("<|im_start|>assistant\n", 1)[1] for ex in data}
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"],
                                 strict=True):
        learnt = labels != -100
        first = int(learnt.nonzero()[0])
        assert not learnt[:first].any() and learnt[first:].sum() == (mask[first:] == 1).sum()
        assert torch.equal(labels[learnt], ids[learnt])  # the answer, unshifted, and nothing else
        text = tok.decode(ids[learnt])
        assert text.endswith(IM_END) and text + "\n" in answers  # ends on the stop token
        assert "<|im_start|>" not in text  # no prompt token is learnt

    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    trainer.train()
    assert trainer.state.global_step == 15
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]
    assert len(changed) == len(before)
    losses = trainer.step_losses
    assert len(losses) == 15 and sum(losses[-3:]) / 3 < losses[0] * 0.7


def test_train_student_scratch_saves_a_full_model(tmp_path: Path) -> None:
    from distill.train import train_student

    cfg = TrainingConfig(max_steps=8, batch_size=8, time_budget_s=120)
    report = train_student(tool_and_json_examples(), base_model="scratch:tiny", cfg=cfg,
                           out_dir=tmp_path, progress=False)
    assert (report.steps, report.stopped_by, report.method) == (8, "steps", "full")
    assert report.final_loss < report.first_loss
    assert report.trainable_params == report.total_params > 500_000
    assert report.examples == 32 and report.skipped == 0 and report.epochs == 2.0
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert "slimgate.json" not in names and not any(n.startswith("checkpoint") for n in names)


def test_time_budget_and_epochs_stop_training(tmp_path: Path) -> None:
    from distill.train import train_student

    timed = train_student(tool_and_json_examples(8), base_model="scratch:tiny",
                          out_dir=tmp_path / "t",
                          cfg=TrainingConfig(time_budget_s=0.5, max_steps=10_000),
                          progress=False)
    # the clock, not the 10,000 steps, ended it (how many steps fit in 0.5 s is the machine's)
    assert timed.stopped_by == "time" and 1 <= timed.steps < 10_000
    short = train_student(tool_and_json_examples(8), base_model="scratch:tiny",
                          out_dir=tmp_path / "e",
                          cfg=TrainingConfig(epochs=2, batch_size=4, max_steps=1000),
                          progress=False)
    assert (short.stopped_by, short.steps, short.epochs) == ("epochs", 4, 2.0)


def test_a_run_its_budget_cuts_short_warms_up_over_its_first_steps_not_the_epoch_bounds() -> None:
    import time

    from distill.train import WARMUP_SHARE, Clock, lr_factor

    # 500 examples in batches of 16 for 20 epochs: 640 steps bound the run, warmup 32 steps.
    # A CPU budget of 600 s holds ~50 of them, ~12 s each after 20 s of loading.
    clock = Clock(600, total_steps=640)
    now = time.monotonic()
    clock.start, clock.steps_began = now - 56, now - 36  # 3 steps done
    assert lr_factor(3, clock, warmup=32) > 0.95  # 36 s of ~580: past 5%, full rate
    clock.steps_began = None  # the steps' start unknown: counted in steps alone
    assert lr_factor(3, clock, warmup=32) == pytest.approx(4 / 32 * lr_factor(40, clock, 32))
    # a run that its steps end first (fast steps, long budget) warms up over its steps
    clock = Clock(600, total_steps=1000)
    clock.steps_began = time.monotonic() - 1.0
    assert lr_factor(9, clock, warmup=50) == pytest.approx(10 / 50, rel=0.02)
    assert WARMUP_SHARE * 600 > 1.0


def test_lora_on_a_cpu_takes_small_batches_unless_configured() -> None:
    from distill.train import batch_rows

    default = TrainingConfig()
    assert batch_rows(default, lora=True, cuda=False) == 4  # few steps fit a CPU budget
    assert batch_rows(default, lora=True, cuda=True) == 16
    assert batch_rows(default, lora=False, cuda=False) == 16  # scratch: hundreds of steps
    assert batch_rows(TrainingConfig(batch_size=8), lora=True, cuda=False) == 8


def test_too_long_examples_are_skipped(tmp_path: Path) -> None:
    from distill.train import train_student

    data = tool_and_json_examples(8)
    data[0] = {**data[0], "messages": [{"role": "user", "content": "word " * 400}]}
    report = train_student(data, base_model="scratch:tiny", out_dir=tmp_path, progress=False,
                           cfg=TrainingConfig(max_steps=2, max_seq_len=256))
    assert (report.examples, report.skipped) == (7, 1)
    with pytest.raises(ValueError, match="LoRA needs pretrained"):
        train_student(data, base_model="scratch:tiny", method="lora", out_dir=tmp_path,
                      cfg=TrainingConfig(max_steps=1))


def test_max_seq_len_is_raised_to_fit_the_tasks_examples(tmp_path: Path) -> None:
    from distill.train import train_student

    # Every example is longer than 32 tokens: the limit grows to the task's p99, within the
    # model's context, instead of leaving nothing to learn from.
    report = train_student(tool_and_json_examples(8), base_model="scratch:tiny", out_dir=tmp_path,
                           progress=False, cfg=TrainingConfig(max_steps=1, max_seq_len=32))
    assert (report.examples, report.skipped) == (8, 0)


@pytest.fixture
def pretrained_dir(tmp_path: Path) -> Path:
    """A tiny random Llama saved like a downloaded model (its tokenizer has a chat template)."""
    from distill.scratch import build_scratch

    path = tmp_path / "tiny-llama"
    texts = [render(*conversation(ex)) for ex in tool_and_json_examples()]
    build_scratch("tiny", texts, path, seed=1)
    return path


def test_lora_adapter_trains_saves_and_reloads(tmp_path: Path, pretrained_dir: Path) -> None:
    from safetensors import safe_open

    from distill.student import Student
    from distill.train import train_student

    out = tmp_path / "adapter"
    report = train_student(tool_and_json_examples(), base_model=str(pretrained_dir),
                           cfg=TrainingConfig(max_steps=6, batch_size=8), out_dir=out,
                           progress=False)
    assert report.method == "lora" and report.steps == 6
    assert report.cpu_seconds > 0  # what the run got of the CPU, beside its wall seconds
    assert 0 < report.trainable_params < report.total_params / 2
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= names
    assert "model.safetensors" not in names
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(pretrained_dir.resolve())
    assert config["r"] == 16 and config["lora_alpha"] == 32
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in k for k in keys)
    assert any("q_proj" in k for k in keys) and any("down_proj" in k for k in keys)

    student = Student.load(out)
    gen = student.generate([{"messages": [{"role": "user", "content": "Lima"}],
                             "max_tokens": 5}])[0]
    assert gen.message["role"] == "assistant" and gen.completion_tokens <= 5


TEMPLATES = {  # TRL ships the real chat templates of these model families
    "qwen2_5": ("<|im_end|>", ["<|im_start|>", "<|im_end|>"]),
    "qwen3": ("<|im_end|>", ["<|im_start|>", "<|im_end|>"]),
    "llama3_1": ("<|eot_id|>", ["<|begin_of_text|>", "<|start_header_id|>",
                                "<|end_header_id|>", "<|eot_id|>"]),
    "phi3": ("<|end|>", ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]),
}


def test_a_lora_run_goes_on_from_an_earlier_runs_adapter(tmp_path: Path,
                                                       pretrained_dir: Path) -> None:
    from safetensors.torch import load_file

    from distill.train import train_student

    def weights(out: Path) -> dict[str, object]:
        return load_file(str(out / "adapter_model.safetensors"))

    first = tmp_path / "v1"
    train_student(tool_and_json_examples(), base_model=str(pretrained_dir), out_dir=first,
                  cfg=TrainingConfig(max_steps=6, batch_size=8), progress=False)
    learnt = weights(first)
    assert any(float(w.abs().max()) > 1e-4 for k, w in learnt.items() if "lora_B" in k)
    # a rate too small to move anything: what the second run saves is where it started
    cfg = TrainingConfig(max_steps=1, batch_size=8, learning_rate=1e-12)
    went_on = train_student(tool_and_json_examples(), base_model=str(pretrained_dir),
                            out_dir=tmp_path / "v2", cfg=cfg, progress=False,
                            init_adapter=first)
    fresh = train_student(tool_and_json_examples(), base_model=str(pretrained_dir),
                          out_dir=tmp_path / "fresh", cfg=cfg, progress=False)
    assert went_on.warm_from == str(first) and fresh.warm_from is None
    second, new = weights(tmp_path / "v2"), weights(tmp_path / "fresh")
    assert set(second) == set(learnt)
    for key, w in learnt.items():
        assert float((second[key] - w).abs().max()) < 1e-6, key
    assert all(float(w.abs().max()) < 1e-9 for k, w in new.items() if "lora_B" in k)  # starts at 0
    with pytest.raises(ValueError, match="LoRA"):
        train_student(tool_and_json_examples(), base_model="scratch:tiny", method="full",
                      out_dir=tmp_path / "full", cfg=cfg, progress=False, init_adapter=first)


@pytest.mark.parametrize("family", sorted(TEMPLATES))
def test_pretrained_templates_learn_an_answer_the_parser_reads(family: str) -> None:
    """A pretrained model keeps its own template; its answers still parse into tool calls."""
    import trl

    from distill.chat_format import parse_answer
    from distill.scratch import train_tokenizer
    from distill.train import encode_example

    template = Path(trl.__file__).parent / "chat_templates" / f"{family}.jinja"
    if not template.exists():
        pytest.skip(f"this TRL does not ship {template.name}")
    end, specials = TEMPLATES[family]
    texts = [render(*conversation(ex)) for ex in tool_and_json_examples()]
    tok = train_tokenizer(texts, vocab_size=600)
    tok.add_tokens(specials, special_tokens=True)
    tok.eos_token, tok.chat_template = end, template.read_text()
    ex = tool_and_json_examples(2)[0 if family == "phi3" else 1]  # phi3's template has no tools

    row = encode_example(ex, tok, stop_token_ids(tok))
    learnt = [t for t in row["labels"] if t != -100]
    assert row["labels"][-len(learnt):] == row["input_ids"][-len(learnt):] == learnt
    text = tok.decode(learnt)
    assert text.endswith(end) and text.count(end) == 1
    message = parse_answer(text.removesuffix(end), ex)
    if family == "phi3":
        assert message == {"role": "assistant", "content": ex["answer"]["content"]}
    else:
        [call] = message["tool_calls"]
        assert call["function"]["name"] == "get_weather"
        assert json.loads(call["function"]["arguments"]) == json.loads(
            ex["answer"]["tool_calls"][0]["function"]["arguments"])


def test_a_pretrained_template_that_cannot_render_tools_is_replaced(pretrained_dir: Path) -> None:
    """SmolLM2's own template renders neither tools nor tool calls: such a base model gets
    the students' ChatML/Hermes template, so tool tasks train in the format the grammar and
    parser expect; a template that renders them the Hermes way is kept."""
    from transformers import AutoTokenizer

    from distill.chat_format import CHAT_TEMPLATE, renders_hermes_tools
    from distill.train import load_base

    tok = AutoTokenizer.from_pretrained(pretrained_dir)
    assert renders_hermes_tools(tok)
    plain = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
             "<|im_end|>\n{% endfor %}")
    tok.chat_template = plain
    assert not renders_hermes_tools(tok)
    tok.save_pretrained(pretrained_dir)
    _, loaded = load_base(str(pretrained_dir), seed=0, texts=[])
    assert loaded.chat_template == CHAT_TEMPLATE
