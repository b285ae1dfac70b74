"""Training on a batch whose rows begin alike: the shared prefix is run once, without
gradients, and its keys and values are reused by every row.

A task's requests share their system prompt, tools and schema — often most of each example
(SNIPS as JSON: ~450 of ~550 tokens). A pretrained candidate trained on a CPU spends nearly
all its compute there. The prefix is run with the adapter applied, as serving runs it; only
its gradients are given up (the adapter learns from the rows' own tokens), so the loss is the
one a full forward pass gives.
"""

from __future__ import annotations

from typing import Any

MIN_PREFIX = 32  # tokens: below this the saving does not pay for the extra forward call


def shared_length(input_ids: Any, labels: Any, attention_mask: Any) -> int:
    """How many leading tokens every row shares, ending before the position that predicts any
    row's first learnt token (the rows' own forward pass must produce that prediction)."""
    import torch

    same = (input_ids == input_ids[:1]).all(dim=0) & attention_mask.bool().all(dim=0)
    run = int(same.long().cumprod(dim=0).sum())
    learnt = labels != -100
    if not bool(learnt.any(dim=1).all()):
        return 0  # a row with nothing to learn: leave the batch to the plain path
    first = int(torch.argmax(learnt.long(), dim=1).min())
    return max(0, min(run, first - 1))


def shared_prefix_forward(model: Any, inputs: dict[str, Any],
                          num_items_in_batch: Any = None) -> Any | None:
    """The model's outputs (with `.loss`) for the batch, its shared prefix run once without
    gradients; None when the rows share too little for this to pay (run it plainly)."""
    import torch

    ids, labels = inputs["input_ids"], inputs["labels"]
    mask = inputs.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(ids)
    rows, width = ids.shape
    prefix = shared_length(ids, labels, mask) if rows > 1 else 0
    if prefix < MIN_PREFIX:
        return None
    with torch.no_grad():
        cache = model(input_ids=ids[:1, :prefix], use_cache=True).past_key_values
    cache.batch_repeat_interleave(rows)
    positions = torch.arange(prefix, width, device=ids.device).unsqueeze(0).expand(rows, -1)
    extra = {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
    extra[_cache_argument(model)] = cache
    return model(input_ids=ids[:, prefix:], attention_mask=mask, position_ids=positions,
                 labels=labels[:, prefix:], use_cache=True, **extra)


def _cache_argument(model: Any) -> str:
    """`cache` where the model's forward names it so (transformers is renaming
    `past_key_values`), else `past_key_values`."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
