"""Free-text comparators against human labels: the embedding cosine and the teacher as judge.

The labelled set is built from SICK (Marelli et al. 2014; `SICK.txt`, the full corpus with
both entailment directions, CC BY-NC-SA 3.0), test split only: "same" = each sentence
entails the other (human labels both ways); "different" = a contradiction, or one sentence
adds facts the other lacks (neutral one way, relatedness ≥ 3.5: close wording, other facts).
Each pair is compared as a student/teacher answer pair by
  - the embedding comparator (all-MiniLM-L6-v2 cosine ≥ `distill.text_similarity`, 0.85), and
  - the judge through the product's own path (`gateway.judge.TeacherJudge`: rubric, random
    order, strict verdicts, the numbers precheck), asking either a real OpenAI-compatible
    teacher (`--teacher-url`, `--teacher-model`, key in `--api-key-env`) or a local GGUF
    model through transformers (`--gguf`).
Prints agreement with the human labels and writes bench/results/text-judge-<time>.json.

    PYTHONPATH=. python bench/text_judge_bench.py --sick SICK.txt --gguf SmolLM2.gguf
    PYTHONPATH=. python bench/text_judge_bench.py --sick SICK.txt --teacher-url \\
        https://api.openai.com/v1 --teacher-model gpt-4o --api-key-env OPENAI_API_KEY
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("same", "contradiction", "adds_facts")


def labelled_pairs(sick: Path, per_class: int, seed: int) -> list[dict[str, Any]]:
    """`per_class` pairs of each class from SICK's test split, drawn with `seed`."""
    pools: dict[str, list[dict[str, Any]]] = {c: [] for c in CLASSES}
    with sick.open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["SemEval_set"] != "TEST":
                continue
            ab, ba = row["entailment_AB"], row["entailment_BA"]
            if ab == "A_entails_B" and ba == "B_entails_A":
                label = "same"
            elif "contradicts" in ab or "contradicts" in ba:
                label = "contradiction"
            elif ("neutral" in ab) != ("neutral" in ba) and float(row["relatedness_score"]) >= 3.5:
                label = "adds_facts"
            else:
                continue
            pools[label].append({"id": row["pair_ID"], "student": row["sentence_A"],
                                 "teacher": row["sentence_B"], "label": label})
    rng = random.Random(seed)
    out = []
    for label in CLASSES:
        if len(pools[label]) < per_class:
            raise SystemExit(f"{sick}: only {len(pools[label])} '{label}' pairs in the test split")
        out += rng.sample(pools[label], per_class)
    return out


def embedding_verdicts(pairs: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    from gateway.embed import Embedder

    embedder = Embedder(device="cpu")
    started = time.perf_counter()
    a = embedder.encode([p["student"] for p in pairs])
    b = embedder.encode([p["teacher"] for p in pairs])
    cosines = [float(x @ y) for x, y in zip(a, b, strict=True)]
    seconds = time.perf_counter() - started
    best = max((scores([c >= t for c in cosines], pairs)["accuracy"], t)
               for t in [i / 100 for i in range(50, 100)])
    return {"agree": [c >= threshold for c in cosines], "cosine": cosines,
            "seconds": round(seconds, 2), "threshold": threshold,
            "best_threshold_on_this_set": {"threshold": best[1], "accuracy": round(best[0], 3)}}


def local_ask(gguf: Path, threads: int, forced: bool) -> Any:
    """An `Ask` answering with a local GGUF model (greedy), as an OpenAI API would; `forced`:
    the reply is the verdict word whose first token the model ranks highest after the
    prompt (decoding restricted to the four words, as structured outputs would do)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                 dtype=torch.float32).eval()

    from policies.judge import VERDICTS

    firsts = [tok.encode(word, add_special_tokens=False)[0] for word in VERDICTS]
    assert len(set(firsts)) == len(VERDICTS), "verdict words share a first token"

    async def ask(body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        ids = tok.apply_chat_template(body["messages"], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        if forced:
            with torch.no_grad():
                logits = model(**ids).logits[0, -1]
            word = VERDICTS[int(torch.argmax(logits[firsts]))]
            usage = {"prompt_tokens": int(ids["input_ids"].shape[1]), "completion_tokens": 1}
            return {"choices": [{"index": 0, "message": {"role": "assistant",
                                                         "content": word}}], "usage": usage}, None
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=body["max_tokens"], do_sample=False,
                                 pad_token_id=tok.eos_token_id)
        new = out[0][ids["input_ids"].shape[1]:]
        text = tok.decode(new, skip_special_tokens=True)
        usage = {"prompt_tokens": int(ids["input_ids"].shape[1]), "completion_tokens": len(new)}
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                "usage": usage}, None

    return ask


def remote_ask(url: str, model_name: str, key_env: str | None) -> tuple[Any, Any]:
    """An `Ask` through the product's own upstream client (retries, timeouts)."""
    from gateway.config import parse_config

    cfg = parse_config({"models": [{"name": model_name, "base_url": url,
                                    "api_key_env": key_env, "timeout_s": 60}]})
    from distill.judge_client import upstream_ask

    model = cfg.model(model_name)
    assert model is not None
    return upstream_ask(cfg, model), model


async def judge_all(ask: Any, model: str, pairs: list[dict[str, Any]], seed: int,
                    concurrency: int, timeout_s: float) -> dict[str, Any]:
    from gateway.judge import TeacherJudge

    judge = TeacherJudge(ask, model, timeout_s=timeout_s, rng=random.Random(seed))
    gate = asyncio.Semaphore(concurrency)
    started = time.perf_counter()

    async def one(p: dict[str, Any]) -> tuple[Any, Any]:
        async with gate:
            return await judge.judge(p["student"], p["teacher"], None)

    results = await asyncio.gather(*(one(p) for p in pairs))
    seconds = time.perf_counter() - started
    calls = [c for _, c in results if c is not None]
    return {"agree": [v.agree for v, _ in results],
            "outcomes": [v.outcome for v, _ in results],
            "raw": [v.raw for v, _ in results],
            "failures": sum(v.failed for v, _ in results),
            "calls": len(calls), "seconds": round(seconds, 1),
            "prompt_tokens": sum(c.prompt_tokens for c in calls),
            "completion_tokens": sum(c.completion_tokens for c in calls),
            "upstream_model": next((c.upstream_model for c in calls if c.upstream_model), None)}


def scores(agree: list[bool], pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy against the human labels, per class, and the share of 'different' pairs
    counted as agreeing (the error that would move a task whose answers differ)."""
    right = [a == (p["label"] == "same") for a, p in zip(agree, pairs, strict=True)]
    by_class = {c: statistics.fmean(r for r, p in zip(right, pairs, strict=True)
                                    if p["label"] == c) for c in CLASSES}
    different = [a for a, p in zip(agree, pairs, strict=True) if p["label"] != "same"]
    return {"accuracy": statistics.fmean(right),
            "by_class": {c: round(v, 3) for c, v in by_class.items()},
            "false_agreement": round(statistics.fmean(different), 3)}


def main(args: argparse.Namespace) -> None:
    pairs = labelled_pairs(args.sick, args.per_class, args.seed)
    out: dict[str, Any] = {"pairs": len(pairs), "per_class": args.per_class, "seed": args.seed,
                           "source": "SICK test split (both entailment directions)"}
    emb = embedding_verdicts(pairs, args.threshold)
    out["embedding"] = {**scores(emb["agree"], pairs),
                        **{k: v for k, v in emb.items() if k not in ("agree", "cosine")}}
    if args.gguf or args.teacher_url:
        if args.gguf:
            ask = local_ask(args.gguf, args.threads, args.forced_choice)
            name = args.gguf.name + (" (forced choice)" if args.forced_choice else "")
            judged = asyncio.run(judge_all(ask, name, pairs, args.seed, 1, args.timeout_s))
        else:
            async def remote() -> dict[str, Any]:
                factory, model = remote_ask(args.teacher_url, args.teacher_model,
                                            args.api_key_env)
                ask, close = await factory
                try:
                    return await judge_all(ask, model.name, pairs, args.seed, args.concurrency,
                                           args.timeout_s)
                finally:
                    await close()
            name = args.teacher_model
            judged = asyncio.run(remote())
        from gateway.cost import CostTable

        priced = judged["upstream_model"] and CostTable().estimate(
            judged["upstream_model"], judged["prompt_tokens"], judged["completion_tokens"])
        out["judge"] = {"model": name, **scores(judged["agree"], pairs),
                        **{k: v for k, v in judged.items()
                           if k not in ("agree", "outcomes", "raw")},
                        "cost_usd": priced or None,
                        "replies": dict(sorted(_count(judged["raw"]).items(),
                                               key=lambda kv: -kv[1])[:12])}
    for name in ("embedding", "judge"):
        if name in out:
            r = out[name]
            print(f"{name:9s} accuracy {r['accuracy']:.3f}  by class {r['by_class']}  "
                  f"'different' counted as agreeing {r['false_agreement']:.3f}"
                  + (f"  failures {r['failures']}/{len(pairs)}" if name == "judge" else ""))
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"text-judge-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


def _count(raw: list[str | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in raw:
        key = "(no call)" if r is None else r.strip()[:40]
        counts[key] = counts.get(key, 0) + 1
    return counts


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sick", type=Path, required=True, help="SICK.txt (the full corpus file)")
    p.add_argument("--per-class", type=int, default=100, help="pairs of each class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threshold", type=float, default=0.85, help="distill.text_similarity")
    p.add_argument("--gguf", type=Path, help="a local GGUF model to judge with")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for --gguf")
    p.add_argument("--forced-choice", action="store_true",
                   help="--gguf replies with the likeliest verdict word (restricted decoding)")
    p.add_argument("--teacher-url", help="OpenAI-compatible base URL of the teacher")
    p.add_argument("--teacher-model", default="gpt-4o", help="the teacher's model name")
    p.add_argument("--api-key-env", help="env var holding the teacher's key")
    p.add_argument("--concurrency", type=int, default=4, help="judge calls at once (remote)")
    p.add_argument("--timeout-s", type=float, default=60.0, help="per judge call")
    return p.parse_args()


if __name__ == "__main__":
    main(parse_args())
