"""An exported student against the student slimgate serves, on a task's recorded requests.

    python bench/export_check.py --config C.toml --task ID --out EXPORT_DIR [--n 200] [--vllm]

An encoder export answers through its own `slimgate_encoder.py`, compared with
`EncoderStudent`; a generative export (a whole model) is asked with transformers alone, the
request delexicalized by its own `slimgate_copy_slots.py` and rendered by its own chat
template, compared with `Student` decoding unconstrained (grammars are the gateway's, not
the model's). `--vllm` also serves the export with vLLM (`SLIMGATE_VLLM_PYTHON`) and
compares token ids. Prints how many answers were identical.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def shipped(path: Path, name: str) -> ModuleType:
    """A module the export carries, loaded from its file (not from slimgate)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def no_ids(message: dict[str, Any]) -> dict[str, Any]:
    return {**message, "tool_calls": [{**c, "id": None} for c in message.get("tool_calls") or []]}


def check_encoder(src: Path, out: Path, requests: list[dict[str, Any]]) -> int:
    from distill.encoder_student import EncoderStudent

    ours = EncoderStudent.load(src)
    theirs = shipped(out / "slimgate_encoder.py", "slimgate_encoder").ExportedEncoder.load(out)
    same = 0
    for i in range(0, len(requests), 16):
        batch = requests[i:i + 16]
        same += sum(no_ids(g.message) == no_ids(m) for g, m in
                    zip(ours.generate(batch), theirs.answer(batch), strict=True))
    return same


def check_generative(src: Path, out: Path, requests: list[dict[str, Any]], max_new: int
                     ) -> tuple[int, list[dict[str, Any]]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.student import Student

    recipe = json.loads((out / "copy_slots.json").read_text())
    asked = requests
    if recipe.get("enabled", True):
        slots = shipped(out / "slimgate_copy_slots.py", "slimgate_copy_slots")
        proposer = slots.CopySlots.from_dict(recipe)
        asked = [slots.Slots(proposer, r).delex_request(r) for r in requests]
    tokenizer, model = AutoTokenizer.from_pretrained(out), AutoModelForCausalLM.from_pretrained(out)
    ours = Student.load(src, constrained=False)
    same = 0
    for r in asked:
        prompt = tokenizer.apply_chat_template(r["messages"], tools=r.get("tools"),
                                               add_generation_prompt=True, tokenize=False)
        enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        ids = model.generate(**enc, max_new_tokens=max_new, do_sample=False)
        text = tokenizer.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        same += text.strip() == ours.generate([{**r, "max_tokens": max_new}])[0].text.strip()
    return same, asked


def check_vllm(src: Path, out: Path, asked: list[dict[str, Any]], max_new: int) -> int:
    import httpx

    from distill.chat_format import prompt_text
    from distill.student import Student
    from tests.vllm_server import vllm_server

    ours, same = Student.load(src, constrained=False), 0
    with vllm_server(out, out.parent / f"{out.name}-vllm.log") as url:
        for r in asked:
            enc = ours.tokenizer(prompt_text(ours.tokenizer, r), return_tensors="pt",
                                 add_special_tokens=False)
            ids = ours.model.generate(**enc, max_new_tokens=max_new, do_sample=False,
                                      eos_token_id=sorted(ours.stop_ids))
            want = [t for t in ids[0, enc["input_ids"].shape[1]:].tolist()
                    if t not in ours.stop_ids]
            resp = httpx.post(f"{url}/chat/completions", timeout=120, json={
                "model": str(out), **r, "max_tokens": max_new, "temperature": 0,
                "logprobs": True, "return_tokens_as_token_ids": True}).json()
            got = [int(t["token"].removeprefix("token_id:"))
                   for t in resp["choices"][0]["logprobs"]["content"]]
            same += [t for t in got if t not in ours.stop_ids] == want
    return same


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--task", required=True)
    p.add_argument("--out", required=True, help="what `slimgate students export` wrote")
    p.add_argument("--n", type=int, default=200, help="recorded requests compared (newest)")
    p.add_argument("--max-new", type=int, default=48, help="tokens per generative answer")
    p.add_argument("--vllm", action="store_true", help="also serve a whole model with vLLM")
    args = p.parse_args()
    import torch

    from gateway.config import load_config
    from gateway.registry import Registry
    from gateway.store.catalog import chat_exchanges
    from gateway.store.db import connect

    torch.set_num_threads(1)
    cfg, out = load_config(args.config), Path(args.out).resolve()
    meta = json.loads((out / "slimgate_student.json").read_text())
    src = Registry(cfg.distill.students_dir).version_dir(args.task, int(meta["version"]))
    con = connect(cfg.store)
    keep = ("messages", "tools", "tool_choice", "response_format")
    requests = [{k: v for k, v in row["request"].items() if k in keep and v is not None}
                for row in chat_exchanges(con, task=args.task, newest=None)][-args.n:]
    con.close()
    if meta.get("kind") == "encoder":
        print(f"{args.task} v{meta['version']} (encoder): {check_encoder(src, out, requests)}"
              f"/{len(requests)} exported answers identical to the student's")
        return 0
    requests = [{k: v for k, v in r.items() if k in ("messages", "tools")} for r in requests]
    same, asked = check_generative(src, out, requests, args.max_new)
    print(f"{args.task} v{meta['version']} (generative): {same}/{len(requests)} answers "
          "identical to the student's (transformers, the export's recipe and template)")
    if args.vllm:
        n = min(10, len(asked))
        print(f"vLLM: {check_vllm(src, out, asked[:n], args.max_new)}/{n} answers "
              "token-identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
