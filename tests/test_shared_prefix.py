"""A batch's shared prompt run once: the loss is the full forward pass's, gradients still reach
the adapter, and LoRA training takes this path on a task's examples (which share their
system prompt and tools)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from distill.shared_prefix import (
    MIN_PREFIX,
    backbone_and_head,
    shared_length,
    shared_prefix_forward,
)
from gateway.config import TrainingConfig
from tests.helpers_students import slotted

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(arch: str) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    shape = {"vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128}
    model = LlamaForCausalLM(LlamaConfig(**shape)) if arch == "llama" else \
        Qwen2ForCausalLM(Qwen2Config(**shape))
    return model.eval()


def batch(prefix: int = 40, width: int = 60, answer_from: int = 45) -> dict[str, Any]:
    """Four rows sharing `prefix` tokens, two right-padded, answers learnt from `answer_from`."""
    import torch

    torch.manual_seed(1)
    ids = torch.randint(0, 100, (4, width))
    ids[:, :prefix] = ids[0, :prefix]
    mask = torch.ones(4, width, dtype=torch.long)
    mask[1, width - 5:] = 0
    mask[2, width - 10:] = 0
    labels = ids.clone()
    labels[:, :answer_from] = -100
    labels[mask == 0] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_the_loss_is_the_full_forward_passes(arch: str) -> None:
    import torch

    model, inputs = tiny(arch), batch()
    with torch.no_grad():
        full = model(**inputs).loss
        shared = shared_prefix_forward(model, inputs)
    assert shared is not None
    assert torch.allclose(shared.loss, full, atol=1e-5)


def test_the_output_head_runs_only_where_an_answer_token_is_learnt() -> None:
    import torch

    model, inputs = tiny("llama"), batch()
    head_rows: list[int] = []
    model.lm_head.register_forward_hook(
        lambda _m, args, _out: head_rows.append(args[0].reshape(-1, 64).shape[0]))
    with torch.no_grad():
        full = model(**inputs).loss
        n = (inputs["labels"][:, 1:] != -100).sum()
        head_rows.clear()
        shared = shared_prefix_forward(model, inputs, n)
    assert shared is not None and torch.allclose(shared.loss, full, atol=1e-5)
    # one row of the prefix pass (its last position), then only the learnt positions
    assert head_rows == [1, int(n)] or head_rows[-1] == int(n)


def test_learnt_positions_give_the_gradients_of_logits_everywhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    import distill.shared_prefix

    grads = []
    for everywhere in (True, False):
        if everywhere:  # the model's own forward: logits at every position
            monkeypatch.setattr(distill.shared_prefix, "backbone_and_head", lambda _m: None)
        else:
            monkeypatch.undo()
        torch.manual_seed(3)
        model = get_peft_model(tiny("qwen2"), LoraConfig(r=4, target_modules="all-linear",
                                                         init_lora_weights=False))
        model.train()
        out = shared_prefix_forward(model, batch())
        assert out is not None
        out.loss.backward()
        grads.append([p.grad.clone() for n, p in model.named_parameters() if "lora_" in n])
    assert len(grads[0]) == len(grads[1]) > 0
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*grads, strict=True))


def test_a_model_with_a_scaled_head_keeps_its_own_forward() -> None:
    from transformers import GemmaConfig, GemmaForCausalLM

    model = GemmaForCausalLM(GemmaConfig(vocab_size=100, hidden_size=64, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=2,
                                         intermediate_size=128, head_dim=16))
    assert backbone_and_head(model) is None  # not a known plain head: logits everywhere
    assert backbone_and_head(tiny("llama")) is not None


def test_the_prefix_ends_before_the_first_learnt_token_is_predicted() -> None:
    inputs = batch(prefix=40, answer_from=36)  # a row's answer starts inside the shared run
    assert shared_length(inputs["input_ids"], inputs["labels"], inputs["attention_mask"]) == 35
    inputs = batch(prefix=40, width=70, answer_from=50)
    assert shared_length(inputs["input_ids"], inputs["labels"], inputs["attention_mask"]) == 40
    inputs["labels"][3, :] = -100  # a row with nothing to learn: the plain path
    assert shared_length(inputs["input_ids"], inputs["labels"], inputs["attention_mask"]) == 0
    assert shared_prefix_forward(tiny("llama"), batch(prefix=MIN_PREFIX - 1)) is None


def test_gradients_reach_the_adapter_through_the_rows_own_tokens() -> None:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny("llama"), LoraConfig(r=4, target_modules="all-linear"))
    model.train()
    out = shared_prefix_forward(model, batch())
    assert out is not None
    out.loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_lora_training_runs_the_shared_prompt_once_per_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import distill.train
    from distill.chat_format import conversation, render
    from distill.scratch import build_scratch

    data = [slotted(i) for i in range(16)]
    build_scratch("tiny", [render(*conversation(ex)) for ex in data], tmp_path / "base", seed=1)
    used: list[bool] = []

    def counted(model: Any, inputs: Any, n: Any = None, memo: Any = None) -> Any:
        out = shared_prefix_forward(model, inputs, n, memo)
        used.append(out is not None)
        return out

    monkeypatch.setattr(distill.train, "shared_prefix_forward", counted)
    report = distill.train.train_student(data, base_model=str(tmp_path / "base"),
                                         out_dir=tmp_path / "adapter", progress=False,
                                         cfg=TrainingConfig(max_steps=2, batch_size=8,
                                                            prefix_reuse_steps=1))
    assert report.steps == 2 and used == [True, True] and report.prefixes_run == 2
    reused = distill.train.train_student(
        data, base_model=str(tmp_path / "base"), out_dir=tmp_path / "adapter2", progress=False,
        cfg=TrainingConfig(max_steps=4, batch_size=8, prefix_reuse_steps=2))
    assert reused.steps == 4 and reused.prefixes_run == 2  # each run prompt serves two steps
    assert TrainingConfig().prefix_reuse_steps == 8  # the default, measured on SNIPS


def test_a_memo_reuses_the_shared_prompt_for_a_few_steps_then_runs_it_again() -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from distill.shared_prefix import PrefixMemo

    model = get_peft_model(tiny("llama"), LoraConfig(r=4, target_modules="all-linear"))
    model.eval()
    inputs = batch()
    with torch.no_grad():
        fresh = model(**inputs).loss
        memo = PrefixMemo(reuse=3)
        first = shared_prefix_forward(model, inputs, memo=memo)
        again = shared_prefix_forward(model, inputs, memo=memo)  # taken from the memo
    assert first is not None and again is not None and memo.computed == 1
    assert torch.allclose(first.loss, fresh, atol=1e-5)
    assert torch.allclose(again.loss, fresh, atol=1e-5)  # the cache it was given is unharmed

    # a batch sharing less of it (its rows part at token 35) takes the memo cut to 35 tokens
    shorter = batch(prefix=35, answer_from=45)
    shorter["input_ids"][:, :35] = inputs["input_ids"][0, :35]
    with torch.no_grad():
        cut = shared_prefix_forward(model, shorter, memo=memo)
        plain = model(**shorter).loss
    assert cut is not None and memo.computed == 1
    assert torch.allclose(cut.loss, plain, atol=1e-5)

    # a memo covering under half of what a batch shares is run afresh for it (and kept)
    short = PrefixMemo(reuse=3)
    with torch.no_grad():
        shared_prefix_forward(model, shorter, memo=short)
        longer = batch(prefix=40, width=120, answer_from=100)
        longer["input_ids"][:, :35] = shorter["input_ids"][0, :35]
        longer["input_ids"][:, 35:95] = 7  # shares 95 tokens; the memo covers 35 of them
        shared_prefix_forward(model, longer, memo=short)
    assert short.computed == 2 and len(short.tokens) > 35

    # the adapter moves: within `reuse` steps the memo is stale, then it is run again
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
        moved = model(**inputs).loss
        stale = shared_prefix_forward(model, inputs, memo=memo)  # 4th use: runs afresh
    assert stale is not None and memo.computed == 2
    assert torch.allclose(stale.loss, moved, atol=1e-5)
    exact = PrefixMemo(reuse=1)
    with torch.no_grad():
        for _ in range(2):
            shared_prefix_forward(model, inputs, memo=exact)
    assert exact.computed == 2  # 1: every step runs its own
