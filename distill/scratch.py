"""Students built from nothing: a byte-level BPE tokenizer trained on the task's own texts and a
small randomly initialised Llama. Nothing comes from a model hub.

A task's traffic is narrow, so a few thousand tokens cover it well and a 2-10M parameter
model learns its answer patterns on a CPU in minutes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from distill.chat_format import (
    CHAT_TEMPLATE,
    END_OF_TEXT,
    IM_END,
    IM_START,
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
)

ScratchSize = Literal["tiny", "small"]
MAX_POSITIONS = 1024

# Llama shapes. tiny is ~2M parameters with a full vocabulary, small ~9M.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
             "intermediate_size": 384, "vocab_size": 4096},
    "small": {"hidden_size": 256, "num_hidden_layers": 8, "num_attention_heads": 8,
              "intermediate_size": 768, "vocab_size": 4096},
}


def _without_specials(texts: Iterable[str]) -> Iterator[str]:
    # Special tokens are added whole; merges spent on their pieces would be wasted.
    for text in texts:
        for special in (IM_START, IM_END, END_OF_TEXT):
            text = text.replace(special, "\n")
        yield text


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096) -> Any:
    """A byte-level BPE tokenizer on `texts`, wrapped for transformers with CHAT_TEMPLATE.

    eos is `<|im_end|>` (the end of every turn, so generation stops after the answer); pad is
    `<|endoftext|>`. `<tool_call>` and `</tool_call>` are single tokens, as in Qwen2.5.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False,
        special_tokens=[END_OF_TEXT, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_without_specials(texts), trainer)
    tok.add_tokens([TOOL_CALL_OPEN, TOOL_CALL_CLOSE])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=IM_END, pad_token=END_OF_TEXT,
        chat_template=CHAT_TEMPLATE, model_max_length=MAX_POSITIONS,
        clean_up_tokenization_spaces=False,
    )


def build_scratch(
    size: ScratchSize, texts: Iterable[str], out_dir: str | Path | None = None, *, seed: int = 0
) -> tuple[Any, Any]:
    """(model, tokenizer) for a scratch student; saved into `out_dir` when one is given."""
    if size not in SIZES:
        raise ValueError(f"scratch size {size!r} is not one of {', '.join(SIZES)}")
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    shape = dict(SIZES[size])
    tokenizer = train_tokenizer(texts, vocab_size=shape.pop("vocab_size"))
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    config = LlamaConfig(
        vocab_size=len(tokenizer), max_position_embeddings=MAX_POSITIONS,
        bos_token_id=None, eos_token_id=eos, pad_token_id=pad, tie_word_embeddings=False,
        **shape,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad,
                                               do_sample=False)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    return model, tokenizer


def parameter_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
