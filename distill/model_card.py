"""The model card (`README.md`) of an exported student, and the snippets that load one.

What a reader needs before using the student elsewhere: the task, the base model and its
licence, the data it learnt from, its held-out agreement with bounds and the gate it was
held to, its contract (tools, response format, answer shape), dates, and how to load it.
The snippets are also in docs/students.md; tests run them from there.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.exemplars import FILE as EXEMPLARS  # the worked examples a student is asked with

if TYPE_CHECKING:
    from distill.export import Exported

RECIPE = "copy_slots.json"  # the copy-slot recipe a student is asked with
PROVENANCE = "slimgate_student.json"  # the registry's slimgate.json, renamed: not a registry dir
ENCODER_LICENCE = "apache-2.0"  # all-MiniLM-L6-v2's licence
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # what vLLM's --max-lora-rank accepts

def heldout_text(metrics: dict[str, Any]) -> str:
    """Held-out agreement with its bounds and the bar, as people read it."""
    if "agreement" not in metrics:
        return "no held-out evaluation recorded"
    conf = float(metrics.get("confidence", 0.95))
    text = (f"held-out agreement {metrics['agreement']:.3f}, {conf:.0%} bounds "
            f"[{metrics.get('lower', 0):.3f}, {metrics.get('upper', 0):.3f}] over "
            f"{metrics.get('n', '?')} comparisons")
    if "min_agreement" in metrics:
        text += (f"; the gate needs a lower bound ≥ {metrics['min_agreement']:.2f} over "
                 f"≥ {metrics.get('min_heldout', '?')}")
    return text


GENERATIVE_SNIPPET = '''\
from transformers import AutoModelForCausalLM, AutoTokenizer

path = "EXPORT_DIR"
tokenizer = AutoTokenizer.from_pretrained(path)  # carries the chat template it was trained with
model = AutoModelForCausalLM.from_pretrained(path)
messages = [{"role": "user", "content": "Where is my order?"}]
prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
out = model.generate(**inputs, max_new_tokens=64, do_sample=False)
print(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
'''

ENCODER_SNIPPET = '''\
import json
import sys
from pathlib import Path

export = Path("EXPORT_DIR")  # the --out directory of the export
sys.path.insert(0, str(export))  # slimgate_encoder.py: its runtime (torch + transformers)
from slimgate_encoder import ExportedEncoder

student = ExportedEncoder.load(export)  # the BERT encoder, its heads, frames and slots
request = {  # a chat-completions request body, as the task's clients send it
    "messages": [{"role": "user", "content": "Will it rain in Lisbon on 2025-05-02?"}],
    "tools": [{"type": "function", "function": {"name": "get_weather"}},
              {"type": "function", "function": {"name": "set_timer"}}],
}
(message,) = student.answer([request])  # an OpenAI assistant message
print(json.dumps(message))
'''


def _date(ts: Any) -> str:
    try:
        return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError, OverflowError):
        return "unknown"


def contract_lines(info: dict[str, Any], kind: str, metrics: dict[str, Any]) -> list[str]:
    """The task's contract from its discovery signature (`tools|response format`)."""
    signature = str(info.get("signature") or "|")
    tools, _, rf = signature.partition("|")
    lines = [f"- tools offered: {', '.join(f'`{t}`' for t in tools.split(',') if t) or 'none'}"]
    if rf.startswith("json_schema:"):
        schema = json.loads(rf.split(":", 1)[1])
        lines.append(f"- response format: `json_schema` named `{schema.get('name')}`:\n\n"
                     f"  ```json\n  {json.dumps(schema.get('schema'))}\n  ```")
    else:
        lines.append(f"- response format: {f'`{rf}`' if rf else 'none (text or tool calls)'}")
    lines.append(f"- answers: {kind}" + (f", shaped as {metrics['answer_shape']}"
                                         if metrics.get("answer_shape") else ""))
    return lines


def _licence(done: Exported, meta: dict[str, Any]) -> tuple[str, str]:
    """(front-matter licence, the sentence about it)."""
    if done.kind == "encoder":
        return ENCODER_LICENCE, f"{ENCODER_LICENCE} (all-MiniLM-L6-v2's)"
    candidate = meta.get("candidate") or {}
    licence = str(candidate.get("licence") or "unknown")
    if str(meta.get("base_model", "")).startswith("scratch:"):
        return licence, (f"{licence} (as configured; a scratch model is built here from nothing "
                         "and inherits no upstream licence)")
    return licence, f"{licence} (the base model's, as configured for the candidate)"


def _usage(done: Exported, meta: dict[str, Any], files: Path) -> str:
    name = f"{done.task.id}-v{done.student.version}"
    if done.kind == "encoder":
        snippet = ENCODER_SNIPPET.replace("EXPORT_DIR", str(done.out))
        example = snippet[snippet.index("request = {"):snippet.index("(message,)")]
        snippet = snippet.replace(example, 'request = {"messages": [{"role": "user", "content": '
                                  '"..."}]}  # a body as the task\'s clients send it\n')
        return ("```python\n" + snippet + "```\n\n"
                "`AutoModel.from_pretrained` loads the encoder alone (sentence features); the "
                "answers need the heads and frames `slimgate_encoder.py` reads.\n")
    snippet = GENERATIVE_SNIPPET.replace("EXPORT_DIR", str(done.out))
    if done.weights == "LoRA adapter":
        adapter = json.loads((files / "adapter_config.json").read_text(encoding="utf-8"))
        base = adapter.get("base_model_name_or_path") or meta.get("base_model")
        rank = next((r for r in LORA_RANKS if r >= int(adapter.get("r") or 0)), LORA_RANKS[-1])
        snippet = snippet.replace(
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "from peft import AutoPeftModelForCausalLM  # loads the base, then the adapter\n"
            "from transformers import AutoTokenizer").replace(
            "AutoModelForCausalLM.from_pretrained", "AutoPeftModelForCausalLM.from_pretrained")
        serve = (f"vllm serve {base} --enable-lora --max-lora-rank {rank} "
                 f"--lora-modules {name}={done.out} --enable-auto-tool-choice "
                 "--tool-call-parser hermes")
    else:
        serve = (f"vllm serve {done.out} --served-model-name {name} "
                 "--enable-auto-tool-choice --tool-call-parser hermes")
    return (f"```python\n{snippet}```\n\nServe it with vLLM (OpenAI API, Hermes tool calls):\n\n"
            f"```sh\n{serve}\n```\n\nslimgate asked it greedily, with a request's "
            "`response_format` written as an instruction at the end of the system turn (as in "
            "training) and the answer held to the request's contract by a grammar.\n")


def _copy_slots(meta: dict[str, Any]) -> str:
    slots = meta.get("copy_slots") or {}
    if not slots.get("enabled", True) or not slots:
        why = slots.get("reason") or "none recorded"
        return f"None: {why}. Ask it with the request as it is.\n"
    return (f"The values its answers copy (ids, dates, names: {len(slots.get('gazetteer') or [])} "
            f"known values plus patterns) were replaced in training by `<V1>`, `<V2>` …; ask "
            f"it the same way and put the values back (`{RECIPE}` with "
            "`slimgate_copy_slots.py`, which needs `orjson`):\n\n```python\n"
            "import json\nfrom slimgate_copy_slots import CopySlots, Slots\n\n"
            f"slots = Slots(CopySlots.from_dict(json.load(open(\"{RECIPE}\"))), request)\n"
            "asked = slots.delex_request(request)  # ask the model this\n"
            "message = slots.restore_message(answer)  # SlotLeak: a slot the request lacks\n"
            "```\n")


def _exemplars(meta: dict[str, Any]) -> str:
    shots = meta.get("exemplars") or {}
    if not shots:
        return "None: ask it with the request alone.\n"
    return (f"It was trained and is asked with the {shots.get('k')} training exchanges nearest "
            "each request as earlier turns, before the request's last user turn "
            f"({shots.get('exchanges', '?')} exchanges in `{EXEMPLARS}`; "
            "`slimgate_exemplars.py` needs nothing but Python). Add them first, then the copy "
            "slots:\n\n```python\n"
            "import json\nfrom slimgate_exemplars import Exemplars\n\n"
            f"shots = Exemplars.from_dict(json.load(open(\"{EXEMPLARS}\")))\n"
            "request = shots.add_to(request)\n```\n")


def model_card(done: Exported, meta: dict[str, Any], files: Path, *, exported_at: float) -> str:
    """README.md for an export whose other files are in `files` (named `done.out` in it)."""
    m, task, s = done.student.metrics, done.task, done.student
    licence, licence_text = _licence(done, meta)
    base = str(meta.get("base_model") or s.base_model)
    front = ["---", f"license: {licence}", "library_name: "
             + ("peft" if done.weights == "LoRA adapter" else "transformers"),
             "tags: [slimgate, distillation]"]
    if done.kind != "encoder" and not base.startswith(("scratch:", "/", ".")):
        front.append(f"base_model: {base}")  # a hub id; a local path means nothing elsewhere
    front.append("---")
    scrubbed = ", ".join(sorted(m.get("scrubbed") or {})) or "none found"
    gate = ("passed" if not done.forced_past
            else f"**not passed: exported with --force**. {done.forced_past}")
    lines = [
        *front, "", f"# {task.label}: slimgate student {task.id} v{s.version}", "",
        f"A{'n' if done.kind == 'encoder' else ''} {done.kind} student distilled by slimgate "
        "from a teacher's answers to one task "
        f"({done.weights}).", "",
        f"- task: {task.label} (`{task.id}`)",
        f"- base model: `{base}`; licence: {licence_text}",
        f"- data: {m.get('train_examples', '?')} training examples from "
        f"{m.get('requests', '?')} distinct requests; {m.get('heldout_examples', '?')} held "
        f"out, {m.get('repeats_judged', 0)} repeats judged; data hash "
        f"`{m.get('data_hash', '?')}`; personal data scrubbed: {scrubbed}",
        f"- evaluation: {heldout_text(m)}",
        f"- gate: {gate}",
        f"- trained: {_date(meta.get('created_at') or s.created_at)}; exported: "
        f"{_date(exported_at)}", "",
        "## Contract", "", *contract_lines(task.info, task.kind, m), "",
        "## Use", "", _usage(done, meta, files),
        "## Worked examples", "", _exemplars(meta),
        "## Copy slots", "", _copy_slots(meta),
        "## Files", "",
        f"`{PROVENANCE}` is the student's record in slimgate (training, metrics)"
        + ("; `chat_template.jinja` the chat template it was trained with"
           if done.kind == "generative" else "") + ". This directory holds "
        "what the student learnt from traffic: share it as you would that traffic.", "",
    ]
    if done.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in done.notes], ""]
    return "\n".join(lines)
