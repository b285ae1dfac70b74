"""Training on a batch whose rows begin alike: the shared prefix is run once, without
gradients, and its keys and values are reused by every row — and, through a `PrefixMemo`,
by the next few steps (`distill.training.prefix_reuse_steps`).

A task's requests share their system prompt, tools and schema — often most of each example
(SNIPS as JSON: ~450 of ~550 tokens). A pretrained candidate trained on a CPU spends nearly
all its compute there. The prefix is run with the adapter applied, as serving runs it; only
its gradients are given up (the adapter learns from the rows' own tokens), so the loss is the
one a full forward pass gives. The output head runs only where an answer token is learnt.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
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


@dataclass
class PrefixMemo:
    """The keys and values of the last shared prefix a run computed, reused by the next
    `reuse` steps whose batches begin with (part of) it, then computed afresh with the
    adapter as it is by then. 1: every step computes its own (exact)."""

    reuse: int = 1
    tokens: tuple[int, ...] = ()
    cache: Any = None
    uses: int = 0
    computed: int = 0  # prefixes run (for measurement)

    def keys_values(self, model: Any, ids: Any, prefix: int) -> tuple[Any, int]:
        """(a cache of the batch's first `n` shared tokens, `n`): the memo's, cut to what
        this batch shares with it, while it is fresh enough; else run now."""
        import torch

        wanted = tuple(ids[0, :prefix].tolist())
        common = 0
        if self.cache is not None and self.uses < self.reuse:
            for a, b in zip(self.tokens, wanted, strict=False):
                if a != b:
                    break
                common += 1
        # Taken while it covers at least half of what this batch shares: a memo cut short by
        # one batch of unusual rows must not cost the steps after it most of their saving
        # (a judgement, not fitted: a task's batches share its whole system prompt).
        if common < MIN_PREFIX or 2 * common < prefix:
            with torch.no_grad():
                self.cache = cache_of(model(input_ids=ids[:1, :prefix], use_cache=True))
            self.tokens, self.uses, common = wanted, 0, prefix
            self.computed += 1
        self.uses += 1
        if self.reuse == 1:
            return self.cache, common  # used once: no copy needed
        cache = copy.deepcopy(self.cache)  # the rows' forward appends to the cache it gets
        if common < len(self.tokens):  # a causal prefix's first tokens do not depend on the rest
            cache.crop(common - len(self.tokens))  # negative: tokens to remove from the end
        return cache, common


def shared_prefix_forward(model: Any, inputs: dict[str, Any],
                          num_items_in_batch: Any = None,
                          memo: PrefixMemo | None = None) -> Any | None:
    """The model's outputs (with `.loss`) for the batch, its shared prefix run once without
    gradients (or taken from `memo`); None when the rows share too little for this to pay
    (run it plainly)."""
    import torch

    ids, labels = inputs["input_ids"], inputs["labels"]
    mask = inputs.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(ids)
    rows, width = ids.shape
    prefix = shared_length(ids, labels, mask) if rows > 1 else 0
    if prefix < MIN_PREFIX:
        return None
    cache, prefix = (memo or PrefixMemo()).keys_values(model, ids, prefix)
    cache.batch_repeat_interleave(rows)
    positions = torch.arange(prefix, width, device=ids.device).unsqueeze(0).expand(rows, -1)
    parts = backbone_and_head(model)
    if parts is None:
        extra = {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
        extra[cache_argument(model)] = cache
        return model(input_ids=ids[:, prefix:], attention_mask=mask, position_ids=positions,
                     labels=labels[:, prefix:], use_cache=True, **extra)
    backbone, head = parts
    hidden = backbone(input_ids=ids[:, prefix:], attention_mask=mask, position_ids=positions,
                      use_cache=True, **{cache_argument(backbone): cache}).last_hidden_state
    return learnt_loss(head, hidden, labels[:, prefix:], num_items_in_batch)


# Causal LMs whose logits are the output head applied to the backbone's last hidden state,
# nothing more (no soft-capping or scaling after it): their loss can be computed on the
# learnt positions alone. Others take the model's own forward (logits everywhere).
PLAIN_HEADS = frozenset({"llama", "qwen2", "qwen3", "mistral", "phi3", "olmo2", "smollm3"})


def backbone_and_head(model: Any) -> tuple[Any, Any] | None:
    """(decoder stack, output head) of a plain causal LM (LoRA layers included), or None."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "model_type", None) not in PLAIN_HEADS:
        return None
    backbone = getattr(base, getattr(base, "base_model_prefix", ""), None)
    head = base.get_output_embeddings()
    return None if backbone is None or head is None else (backbone, head)


def learnt_loss(head: Any, hidden: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Causal LM loss with the output head run only where a label is learnt: position t
    predicts label t+1, as transformers' loss shifts them; summed over `num_items_in_batch`
    when given (the Trainer's count over the batch), else the mean. Answers are a small share
    of a row (SNIPS JSON: ~30 of ~80 tokens after the prefix) and the head is a fifth of a
    135M model's compute (49,152 x 576), so most of its cost was spent on positions with no
    loss."""
    import torch
    from transformers.modeling_outputs import CausalLMOutputWithPast

    targets = labels[:, 1:]
    learnt = targets != -100
    logits = head(hidden[:, :-1][learnt]).float()
    loss = torch.nn.functional.cross_entropy(logits, targets[learnt], reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else learnt.sum()
    if torch.is_tensor(count):
        count = count.to(loss.device)
    return CausalLMOutputWithPast(loss=loss / count)


def cache_of(output: Any) -> Any:
    """The key/value cache a forward pass returned (`cache`, formerly `past_key_values`)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def cache_argument(model: Any) -> str:
    """`cache` where the model's forward names it so (transformers is renaming
    `past_key_values`), else `past_key_values`."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
