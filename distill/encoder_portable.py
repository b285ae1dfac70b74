"""How an encoder student answers a request, in one file that needs only torch and transformers.

slimgate's encoder student (`distill/encoder_student.py`) answers with these functions, and
`slimgate students export` copies this file unchanged into every encoder export as
`slimgate_encoder.py`, where `ExportedEncoder` loads the exported encoder (a plain Hugging
Face BERT) and its heads: the same answers, without slimgate installed. Keep it standalone:
the standard library at the top, torch / transformers / safetensors inside functions.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*\d+>")  # copy slots and scrubbed values (`<V1>`)
JOINERS = "-/:.'"  # between two letters or digits, these join one value ("06-20", "I'd")
SLOT = "\x00slot"  # a frame leaf filled from the request; never a JSON value a teacher writes
MAX_SPAN_TOKENS = 32  # longest copied value considered; ids, names and dates are far shorter


def message_text(content: Any) -> str:
    """A message's content as plain text (text parts joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""


def _call_text(call: dict[str, Any]) -> str:
    fn = call.get("function") or {}
    return f"{fn.get('name', '')}({fn.get('arguments', '')})"


def request_text(request: dict[str, Any]) -> tuple[str, int]:
    """What the encoder reads, and where its system part starts: the last user turn first (it
    holds most copied values and must survive truncation), then the earlier turns newest
    first, the system prompt last (the instruction, the same in most requests)."""
    messages = [m for m in request.get("messages") or [] if isinstance(m, dict)]
    last_user = next((i for i in range(len(messages) - 1, -1, -1)
                      if messages[i].get("role") == "user"), None)
    parts = [message_text(messages[last_user].get("content"))] if last_user is not None else []
    system: list[str] = []
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if i == last_user:
            continue
        text = message_text(m.get("content"))
        calls = " ".join(_call_text(c) for c in m.get("tool_calls") or [] if isinstance(c, dict))
        line = f"{m.get('role', '')}: {' '.join(x for x in (text, calls) if x)}"
        (system if m.get("role") in ("system", "developer") else parts).append(line)
    instance = "\n".join(parts)
    return "\n".join(parts + system), len(instance)


def read_text(spec: dict[str, Any], request: dict[str, Any]) -> str:
    """The part of a request the encoder reads (the system prompt only if it learnt to)."""
    text, instance_end = request_text(request)
    return text if spec.get("read_system") else text[:instance_end]


def cast(text: str, kind: str) -> Any:
    """A copied span as the value type the slot holds (the span itself when it does not parse)."""
    try:
        if kind == "int":
            return int(text.replace(",", ""))
        if kind == "float":
            return float(text.replace(",", ""))
    except ValueError:
        return text
    return text


def is_slot(value: Any) -> bool:
    return isinstance(value, list) and value[:1] == [SLOT]


def fill(frame: Any, values: dict[str, Any]) -> Any:
    """The answer tree of a frame with its slots filled; an absent object slot is left out."""
    if is_slot(frame):
        return values.get(frame[1])
    if isinstance(frame, dict):
        return {k: fill(v, values) for k, v in frame.items()
                if not (is_slot(v) and v[1] not in values)}
    if isinstance(frame, list):
        return [fill(v, values) for v in frame]
    return frame


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
    """Per token: may a copied value start here, may it end here. Never inside a word or a
    number, nor at a joiner inside one ("1/20/2023", "2026-06-20", "11:30", "3.5"), so
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


def frame_allowed(frame: dict[str, Any], request: dict[str, Any]) -> bool:
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


def span_band(n: int) -> Any:
    """(n, n) pairs (start, end) with start ≤ end < start + MAX_SPAN_TOKENS."""
    import torch

    idx = torch.arange(n)
    return (idx[None, :] >= idx[:, None]) & (idx[None, :] - idx[:, None] < MAX_SPAN_TOKENS)


def best_span(start: Any, end: Any, valid: Any, ends: Any = None) -> tuple[int, int, float]:
    """The (start, end) token pair with the highest summed score, start ≤ end, short enough,
    and that score: the start among `valid` tokens, the end among `ends` (default `valid`)."""
    import torch

    neg = torch.finfo(start.dtype).min / 4
    scores = start[:, None] + end[None, :]
    n = scores.shape[0]
    allowed = span_band(n) & valid[:, None] & (valid if ends is None else ends)[None, :]
    scores = scores.masked_fill(~allowed, neg)
    flat = int(torch.argmax(scores))
    return flat // n, flat % n, float(scores.flatten()[flat])


def row_answer(frames: list[dict[str, Any]], key_index: dict[str, int],
               request: dict[str, Any], text: str, offsets: Any, mask: Any,
               frame_logits: Any, pointer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """One request's frame and slot values. `pointer(k)` gives slot key k's (start, end)
    logits over the row's tokens; token 0 ([CLS]) stands for "absent"."""
    import torch

    valid = (offsets[:, 1] > offsets[:, 0]) & mask.bool()
    may_start, may_end = word_edges(text, offsets.tolist())
    starts, ends = valid & torch.tensor(may_start), valid & torch.tensor(may_end)
    order = frame_logits.argsort(descending=True).tolist()
    # The best frame the request allows; if none fits, the best one (the contract check fails).
    frame = next((frames[i] for i in order if frame_allowed(frames[i], request)),
                 frames[order[0]])
    values = {}
    for key, kind in frame["slots"].items():
        start, end = pointer(key_index[key])
        s, e, score = best_span(start, end, starts, ends)
        if float(start[0] + end[0]) > score and key not in frame["required"]:
            continue  # pointing at [CLS] beats every span: the optional slot is absent
        a, b = whole_placeholders(text, int(offsets[s][0]), int(offsets[e][1]))
        values[key] = cast(text[a:b], kind)
    return frame, values


def answer_message(frame: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI assistant message of a frame filled with its values."""
    tree = fill(frame["tree"], values)
    content = tree["content"]
    if tree["json"] and content is not None:
        content = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
    elif content is not None:
        content = str(content)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tree["calls"]:
        message["tool_calls"] = [
            {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": c["name"],
                          "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
            for c in tree["calls"]]
    return message


class ExportedEncoder:
    """An exported encoder student: a BERT encoder, a frame classifier and span pointers."""

    def __init__(self, bert: Any, tokenizer: Any, heads: dict[str, Any],
                 spec: dict[str, Any]) -> None:
        self.bert, self.tokenizer, self.heads, self.spec = bert.eval(), tokenizer, heads, spec
        self.key_index = {k: n for n, k in enumerate(spec["keys"])}
        self.scale = float(heads["start_proj.weight"].shape[0]) ** -0.5

    @classmethod
    def load(cls, directory: str | Path) -> ExportedEncoder:
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        d = Path(directory)
        return cls(AutoModel.from_pretrained(d), AutoTokenizer.from_pretrained(d),
                   load_file(str(d / "heads.safetensors")),
                   json.loads((d / "encoder.json").read_text(encoding="utf-8")))

    def answer(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One OpenAI assistant message per chat-completions request."""
        import torch

        h, texts = self.heads, [read_text(self.spec, r) for r in requests]
        with torch.inference_mode():
            enc = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt",
                                 max_length=self.spec["max_length"], return_offsets_mapping=True)
            mask = enc["attention_mask"]
            tokens = self.bert(input_ids=enc["input_ids"], attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * m).sum(1) / m.sum(1).clamp(min=1.0)
            frames = pooled @ h["frame.weight"].T + h["frame.bias"]
            s_feats = tokens @ h["start_proj.weight"].T + h["start_proj.bias"]
            e_feats = tokens @ h["end_proj.weight"].T + h["end_proj.bias"]
            out = []
            for r, request in enumerate(requests):
                def pointer(k: int, r: int = r) -> tuple[Any, Any]:
                    return (s_feats[r] @ h["start_query.weight"][k] * self.scale,
                            e_feats[r] @ h["end_query.weight"][k] * self.scale)

                frame, values = row_answer(self.spec["frames"], self.key_index, request,
                                           texts[r], enc["offset_mapping"][r], mask[r],
                                           frames[r], pointer)
                out.append(answer_message(frame, values))
        return out
