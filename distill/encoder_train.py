"""Training the encoder student's heads (and its top layers) on a task's frames and slots.

The frozen lower layers run once per training batch and their outputs are cached, so an
epoch costs only the tuned top layers and the heads. The heads first learn alone on the
whole encoder's cached outputs (no encoder layer runs then: seconds for 500 requests), and
only then train with the tuned top layers, so the slow epochs start from working heads. Each
phase stops at its time limit (checked per epoch), at `max_epochs`, or once the loss is ~0.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from distill.encoder_answers import request_text
from distill.encoder_data import Analysis, Item


@dataclass
class EncoderConfig:
    # Top encoder layers trained with the heads (0 freezes the encoder), after a short
    # heads-alone warm-up. Measured on SNIPS intents (public; bench/encoder_bench.py's label
    # split, 400 held out, 5 seeds, one thread): 2 layers after a 60-epoch warm-up scored
    # 0.952 at 130 training requests and 0.975 at 550; 4 layers after 8 epochs 0.976 and
    # 0.991, better on every seed, for about twice the training seconds (3 → 6 s, 14 → 27 s).
    # The long warm-up fitted the heads to a training loss under `min_loss` on frozen
    # features, so the tuned phase stopped after 2-4 epochs having learnt almost nothing.
    tune_layers: int = 4
    max_length: int = 256  # request tokens read (MiniLM was trained on up to 256)
    batch_size: int = 16
    lr_heads: float = 3e-3  # the heads start from scratch
    lr_layers: float = 1e-4  # pretrained layers move gently
    max_epochs: int = 60  # per phase: heads alone, then heads with the tuned layers
    min_loss: float = 1e-3  # stop a phase once its mean epoch loss is below this
    warm_share: float = 0.25  # of the budget, at most, for the heads-alone warm-up
    warm_epochs: int = 8  # heads-alone epochs at most when top layers are tuned (above)


@dataclass
class Spec:
    """Everything besides weights that a saved encoder student needs (encoder.json)."""

    split: int
    max_length: int
    keys: list[str]
    frames: list[dict[str, Any]]  # id, tree, slots {key: type}, required [keys], count
    # The system prompt is read only when the teacher copied from it: otherwise it is the
    # task's fixed instruction, and leaving it out halves the tokens the encoder reads.
    read_system: bool = False
    base: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"format": 1, "split": self.split, "max_length": self.max_length,
                "keys": self.keys, "frames": self.frames, "read_system": self.read_system,
                "base": self.base}

    def text(self, request: dict[str, Any]) -> str:
        """The part of a request the encoder reads."""
        text, instance_end = request_text(request)
        return text if self.read_system else text[:instance_end]


def build_spec(analysis: Analysis, n_layers: int, cfg: EncoderConfig) -> Spec:
    items = [i for i in analysis.items if i is not None]
    order = sorted(analysis.frames, key=lambda f: (-analysis.frames[f].count, f))
    frames: list[dict[str, Any]] = []
    for ident in order:
        frame = analysis.frames[ident]
        present = [i for i in items if i.frame == ident]
        required = [k for k in frame.slots if all(k in i.values for i in present)]
        frames.append({"id": ident, "tree": frame.tree, "slots": frame.slots,
                       "required": required, "count": frame.count})
    keys = sorted({k for f in frames for k in f["slots"]})
    split = max(0, n_layers - max(0, min(cfg.tune_layers, n_layers)))
    read_system = any(b > i.instance_end for i in items for spans in i.spans.values()
                      for _, b in spans)
    return Spec(split=split, max_length=cfg.max_length, keys=keys, frames=frames,
                read_system=read_system)


def token_spans(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]
                ) -> list[tuple[int, int]]:
    """Character spans as (first token, last token); spans cut by truncation or inside a
    token are dropped."""
    starts = {a: t for t, (a, b) in enumerate(offsets) if b > a}
    ends = {b: t for t, (a, b) in enumerate(offsets) if b > a}
    return [(starts[a], ends[b]) for a, b in spans if a in starts and b in ends
            and starts[a] <= ends[b]]


def _batch(tokenizer: Any, items: list[Item], spec: Spec, frame_index: dict[str, int],
           key_index: dict[str, int]) -> dict[str, Any]:
    import torch

    texts = [i.text if spec.read_system else i.text[:i.instance_end] for i in items]
    enc = tokenizer(texts, padding=True, truncation=True,
                    max_length=spec.max_length, return_offsets_mapping=True,
                    return_tensors="pt")
    width = enc["input_ids"].shape[1]
    rows, keys, golds = [], [], []
    missed = 0
    for r, item in enumerate(items):
        offsets = [tuple(o) for o in enc["offset_mapping"][r].tolist()]
        for key in spec.frames[frame_index[item.frame]]["slots"]:
            # An absent optional slot points at [CLS] (token 0): "no value here".
            found = token_spans(offsets, item.spans[key]) if key in item.values else [(0, 0)]
            if not found:
                missed += 1
                continue
            gold = torch.zeros(width, width, dtype=torch.bool)
            for s, e in found:
                gold[s, e] = True
            rows.append(r)
            keys.append(key_index[key])
            golds.append(gold)
    return {"ids": enc["input_ids"], "mask": enc["attention_mask"],
            "frame": torch.tensor([frame_index[i.frame] for i in items]),
            "rows": torch.tensor(rows, dtype=torch.long),
            "keys": torch.tensor(keys, dtype=torch.long),
            "gold": (torch.stack(golds) if golds
                     else torch.zeros(0, width, width, dtype=torch.bool)),
            "copied": sum(len(i.values) for i in items), "missed": missed}


def _span_loss(start: Any, end: Any, gold: Any, mask: Any) -> Any:
    """-log P(a gold span) over all (start, end) pairs a decoder may pick: start ≤ end, at
    most MAX_SPAN_TOKENS long, inside the request. Scoring pairs, not the two ends apart,
    keeps a value copied twice from being read from one copy's start to the other's end."""
    import torch

    from distill.encoder_heads import span_band

    neg = torch.finfo(start.dtype).min / 4
    scores = start[:, :, None] + end[:, None, :]
    allowed = span_band(start.shape[1]) & mask[:, :, None] & mask[:, None, :]
    scores = scores.masked_fill(~allowed, neg)
    return (torch.logsumexp(scores.flatten(1), -1)
            - torch.logsumexp(scores.masked_fill(~gold, neg).flatten(1), -1)).mean()


def _loss(net: Any, b: dict[str, Any], tokens: Any) -> Any:
    import torch.nn.functional as F

    frame_logits, s_feats, e_feats = net.heads(tokens, b["mask"])
    loss = F.cross_entropy(frame_logits, b["frame"])
    if len(b["rows"]):
        loss = loss + _span_loss(
            net.span_logits(s_feats, net.start_query, b["rows"], b["keys"]),
            net.span_logits(e_feats, net.end_query, b["rows"], b["keys"]),
            b["gold"], b["mask"][b["rows"]].bool())
    return loss


def _epochs(net: Any, batches: list[dict[str, Any]], groups: list[dict[str, Any]], *,
            source: str, tune: bool, max_epochs: int, min_loss: float, deadline: float,
            rng: random.Random) -> tuple[int, float]:
    """Epochs over `batches` from the cached `source` states until the deadline (checked
    before each epoch against the last epoch's time), `max_epochs` or a ~0 loss."""
    import torch

    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    epochs, loss_mean, epoch_s = 0, float("inf"), 0.0
    while epochs < max_epochs and loss_mean > min_loss:
        if epochs and time.perf_counter() + epoch_s > deadline:
            break
        started = time.perf_counter()
        net.train()
        total = 0.0
        for b in rng.sample(batches, len(batches)):
            tokens = net.upper(b[source], b["mask"]) if tune else b[source]
            loss = _loss(net, b, tokens)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
        loss_mean = total / max(1, len(batches))
        epochs += 1
        epoch_s = time.perf_counter() - started
    net.eval()
    return epochs, loss_mean


def fit(net: Any, tokenizer: Any, analysis: Analysis, spec: Spec, cfg: EncoderConfig, *,
        budget_s: float, seed: int) -> dict[str, Any]:
    """Train `net` in place; returns the training report.

    The heads are first trained alone on the whole encoder's cached outputs (cheap: no
    encoder layer runs in these epochs); when top layers are tuned, they then train together
    with the warmed-up heads for the rest of the budget.
    """
    import torch

    began = time.perf_counter()
    deadline = began + budget_s
    torch.manual_seed(seed)
    rng = random.Random(seed)
    items = [i for i in analysis.items if i is not None]
    frame_index = {f["id"]: n for n, f in enumerate(spec.frames)}
    key_index = {k: n for n, k in enumerate(spec.keys)}
    # Similar lengths share a batch: less padding, and the cached states stay small.
    items.sort(key=lambda i: len(i.text))
    batches = [_batch(tokenizer, items[s:s + cfg.batch_size], spec, frame_index, key_index)
               for s in range(0, len(items), cfg.batch_size)]
    net.eval()
    with torch.no_grad():
        for b in batches:  # the frozen part once, and the whole encoder for the warm-up
            b["cached"] = net.lower(b["ids"], b["mask"])
            b["top"] = net.upper(b["cached"], b["mask"])
    heads = [p for n, p in net.named_parameters() if not n.startswith("bert.")]
    tuned = [p for layer in net.bert.encoder.layer[spec.split:] for p in layer.parameters()]
    # Without tuned layers the warm-up is the whole training; with them it gets a share.
    warm_deadline = deadline if not tuned else began + budget_s * cfg.warm_share
    warm_max = min(cfg.max_epochs, cfg.warm_epochs) if tuned else cfg.max_epochs
    warm, loss = _epochs(net, batches, [{"params": heads, "lr": cfg.lr_heads}], source="top",
                         tune=False, max_epochs=warm_max, min_loss=cfg.min_loss,
                         deadline=warm_deadline, rng=rng)
    tuned_epochs = 0
    if tuned:
        for b in batches:
            del b["top"]
        tuned_epochs, loss = _epochs(
            net, batches, [{"params": heads, "lr": cfg.lr_heads / 3},
                           {"params": tuned, "lr": cfg.lr_layers}],
            source="cached", tune=True, max_epochs=cfg.max_epochs, min_loss=cfg.min_loss,
            deadline=deadline, rng=rng)
    copied = sum(b["copied"] for b in batches)
    missed = sum(b["missed"] for b in batches)
    return {"epochs": warm + tuned_epochs, "head_epochs": warm, "tuned_epochs": tuned_epochs,
            "loss": loss, "seconds": time.perf_counter() - began, "examples": len(items),
            "frames": len(spec.frames), "slot_keys": len(spec.keys),
            "tune_layers": len(net.bert.encoder.layer) - spec.split,
            "pointable": (copied - missed) / copied if copied else 1.0}
