"""A trained student loaded for serving: batched greedy generation of OpenAI assistant messages.

`Student.load` takes a full model directory or a PEFT adapter directory (its base is loaded
and the adapter merged in, which makes CPU generation as fast as the base alone). Prompts
are rendered with the saved tokenizer's chat template, the same one training used. Each
row is decoded under its request's own contract (`distill/constrained.py`) when it has one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from distill.chat_format import IM_END, parse_answer, prompt_text, stop_token_ids
from distill.shared_prefix import cache_argument, cache_of

FinishReason = Literal["stop", "tool_calls", "length"]
log = logging.getLogger("slimgate.student")
# Tokens a prompt prefix must share to be kept: below this, running it again costs little.
MIN_SHARED = 32


@dataclass
class Generation:
    message: dict[str, Any]  # the OpenAI assistant message (parse_answer)
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int  # generated tokens, the stop token included
    text: str  # the raw answer text, before parsing


def request_cap(request: dict[str, Any], default: int) -> int:
    """The request's own token cap (max_completion_tokens, else max_tokens), at most `default`."""
    cap = request.get("max_completion_tokens") or request.get("max_tokens")
    return max(0, min(int(cap), default)) if isinstance(cap, int | float) else default


def stop_strings(request: dict[str, Any]) -> list[str]:
    stop = request.get("stop")
    items = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    return [s for s in items if isinstance(s, str) and s]


@contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """No transformers progress bars (weight loading, shard writing) inside the block."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def _device_dtype() -> tuple[str, Any]:
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return "cpu", torch.float32


class Student:
    def __init__(self, model: Any, tokenizer: Any, *, path: str = "", device: str = "cpu",
                 constrained: bool = True) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.path = path
        self.device = device
        tokenizer.padding_side = "left"  # batched generation continues every row at the right
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.stop_ids = stop_token_ids(tokenizer, model.generation_config)
        self.pad_id = int(tokenizer.pad_token_id)
        # A fresh config: sampling settings a pretrained model ships with do not apply here.
        self._generation = {"do_sample": False, "eos_token_id": sorted(self.stop_ids),
                            "pad_token_id": self.pad_id}
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 0) or 0)
        self._lock = threading.Lock()
        self.constrained = constrained  # decode under each request's contract (grammar)
        self._constrainer: Any = None
        self.prefix = PromptPrefix()  # the shared prompt's keys and values, run once
        self.reuse_prefix = True

    def _matchers(self, requests: list[dict[str, Any]]) -> list[Any]:
        """One grammar matcher per request (None: unconstrained row)."""
        if not self.constrained:
            return [None] * len(requests)
        if self._constrainer is None:
            try:
                from distill.constrained import Constrainer

                self._constrainer = Constrainer(self.tokenizer, self.stop_ids)
            except (ImportError, ValueError) as e:  # no llguidance, or a slow tokenizer
                log.warning("student %s decodes unconstrained: %s", self.path, e)
                self.constrained = False
                return [None] * len(requests)
        return [self._constrainer.matcher(r) for r in requests]

    @classmethod
    def load(cls, path: str | Path, *, constrained: bool = True) -> Student:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        device, dtype = _device_dtype()
        tokenizer = AutoTokenizer.from_pretrained(path)
        adapter = path / "adapter_config.json"
        with quiet_progress_bars():
            if adapter.exists():
                from peft import PeftModel

                base_path = json.loads(adapter.read_text())["base_model_name_or_path"]
                base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype,
                                                            local_files_only=True)
                model = PeftModel.from_pretrained(base, path).merge_and_unload()
            else:
                model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        model.to(device).eval()
        return cls(model, tokenizer, path=str(path), device=device, constrained=constrained)

    def generate(
        self, requests: list[dict[str, Any]], max_new_tokens: int = 256
    ) -> list[Generation]:
        """One greedy answer per request, generated as one batch: the prompt text the
        requests share is run once per student (`PromptPrefix`), each row's own part padded
        on its left, between the shared part and itself."""
        if not requests:
            return []
        import torch

        with self._lock, torch.inference_mode():
            prompts = [prompt_text(self.tokenizer, r) for r in requests]
            rows = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
            shared, cache = self.prefix.take(self.model, rows) if self.reuse_prefix else (0, None)
            enc = _layout(rows, shared, self.pad_id, self.device)
            width = enc["input_ids"].shape[1]
            caps = [request_cap(r, max_new_tokens) for r in requests]
            if self.max_positions:  # never run past the positions the model was built for
                caps = [min(c, max(0, self.max_positions - width)) for c in caps]
            stops = [stop_strings(r) for r in requests]
            new_ids: list[list[int]] = [[] for _ in requests]
            if max(caps) > 0:
                from transformers import GenerationConfig, LogitsProcessorList

                config = GenerationConfig(**self._generation, max_new_tokens=max(caps))
                processors = LogitsProcessorList()
                matchers = self._matchers(requests)
                if any(m is not None for m in matchers):
                    from distill.constrained import GrammarLogitsProcessor

                    processors.append(GrammarLogitsProcessor(
                        matchers, self._constrainer.tokenizer.vocab_size, width,
                        self._constrainer.stop_ids))
                extra = {} if cache is None else {cache_argument(self.model): cache}
                out = self.model.generate(
                    **enc, generation_config=config, logits_processor=processors,
                    stopping_criteria=[_RowStop(caps, stops, width, self.tokenizer)], **extra)
                new_ids = out[:, width:].tolist()
            prompt_lens = [len(r) for r in rows]
        return [self._finish(r, ids[:cap], stop, int(n))
                for r, ids, cap, stop, n in zip(requests, new_ids, caps, stops, prompt_lens,
                                                strict=True)]

    def _finish(self, request: dict[str, Any], ids: list[int], stops: list[str],
                prompt_tokens: int) -> Generation:
        end = next((i for i, t in enumerate(ids) if t in self.stop_ids), None)
        finish: FinishReason = "length" if end is None else "stop"
        body = ids if end is None else ids[:end]
        body = [t for t in body if t != self.pad_id]  # rows stopped early are padded after
        used = len(body) + (0 if end is None else 1)
        text = self.tokenizer.decode(body, skip_special_tokens=False)
        cuts = [k for k in (text.find(s) for s in [*stops, IM_END]) if k >= 0]
        if cuts:  # a stop string, or a turn end that is plain text for this tokenizer
            text, finish = text[: min(cuts)], "stop"
        message = parse_answer(text, request)
        if finish == "stop" and message.get("tool_calls"):
            finish = "tool_calls"
        return Generation(message, finish, prompt_tokens, used, text)


class PromptPrefix:
    """The keys and values of the prompt text a student's requests begin with — a task's
    system prompt, tools and schema, most of each prompt (SNIPS as JSON: ~450 of ~480
    tokens) — computed once and reused by every later request that begins with it, so a
    request's prefill runs only its own tokens. The prefix is what the requests seen share:
    the first request teaches nothing, the second sets it, a later one that differs earlier
    shortens it. The model's weights must not change while it is kept (a serving student)."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.cache: Any = None
        self.last: list[int] = []  # the previous prompt, while no prefix is kept

    def take(self, model: Any, rows: list[list[int]]) -> tuple[int, Any]:
        """(tokens of `rows` that the returned cache holds, a copy of it for this batch);
        (0, None) when they share too little."""
        import copy

        import torch

        shortest = min(len(r) for r in rows) - 1  # every row keeps a token of its own to run
        kept = self.ids
        if not kept or len(kept) > shortest or any(r[:len(kept)] != kept for r in rows):
            seen = [*rows, kept or self.last] if (kept or self.last) else rows
            n = min(_common_length(seen), shortest)
            self.last = rows[0]
            if len(seen) < 2 or n < MIN_SHARED:
                self.ids, self.cache = [], None
                return 0, None
            ids = torch.tensor([rows[0][:n]], device=model.device)
            self.ids, self.cache = rows[0][:n], cache_of(model(input_ids=ids, use_cache=True))
        cache = copy.deepcopy(self.cache)
        if len(rows) > 1:
            cache.batch_repeat_interleave(len(rows))
        return len(self.ids), cache


def _common_length(rows: list[list[int]]) -> int:
    n = 0
    for column in zip(*rows, strict=False):
        if any(t != column[0] for t in column):
            break
        n += 1
    return n


def _layout(rows: list[list[int]], shared: int, pad_id: int, device: str) -> dict[str, Any]:
    """input_ids and attention_mask: each row's first `shared` tokens, then padding, then the
    rest of the row, so every row ends at the right edge (plain left padding when `shared`
    is 0). Positions follow the mask, so padding in the middle changes no token's position."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        own = len(row) - shared
        ids[i, :shared], mask[i, :shared] = torch.tensor(row[:shared], dtype=torch.long), 1
        ids[i, width - own:], mask[i, width - own:] = torch.tensor(row[shared:]), 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


class _RowStop:
    """Per-row stopping: each row's own token cap, and its stop strings."""

    def __init__(self, caps: list[int], stops: list[list[str]], width: int, tokenizer: Any) -> None:
        self.caps, self.stops, self.width, self.tokenizer = caps, stops, width, tokenizer

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        n = input_ids.shape[1] - self.width
        done = torch.tensor([n >= cap for cap in self.caps], device=input_ids.device)
        for row, stops in enumerate(self.stops):
            if stops and not done[row]:
                tail = self.tokenizer.decode(input_ids[row, self.width:][-32:])
                done[row] = any(s in tail for s in stops)
        return done
