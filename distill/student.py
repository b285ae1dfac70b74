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

FinishReason = Literal["stop", "tool_calls", "length"]
log = logging.getLogger("slimgate.student")


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
        """One greedy answer per request, generated as one left-padded batch."""
        if not requests:
            return []
        import torch

        with self._lock, torch.inference_mode():
            prompts = [prompt_text(self.tokenizer, r) for r in requests]
            enc = self.tokenizer(prompts, return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.device)
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
                out = self.model.generate(
                    **enc, generation_config=config, logits_processor=processors,
                    stopping_criteria=[_RowStop(caps, stops, width, self.tokenizer)])
                new_ids = out[:, width:].tolist()
            prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
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
