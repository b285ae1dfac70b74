"""A public agent workload no one here wrote: the SNIPS voice-assistant benchmark as tool calls.

The Snips NLU benchmark (2017, github.com/snipsco/nlu-benchmark, `2017-06-custom-intent-
engines`) holds ~2,100 annotated user utterances for seven intents (AddToPlaylist,
BookRestaurant, GetWeather, PlayMusic, RateBook, SearchCreativeWork, SearchScreeningEvent),
each with its slot values marked as spans of the utterance. An agent's front door does the
same thing as a tool call: one tool per intent, the slots as arguments copied from the
user's sentence. The gold annotation is the teacher's answer. The data is read from a local
checkout (a work tree or a bare git directory) and never copied into this repository.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

INTENTS = ["AddToPlaylist", "BookRestaurant", "GetWeather", "PlayMusic", "RateBook",
           "SearchCreativeWork", "SearchScreeningEvent"]
FOLDER = "2017-06-custom-intent-engines"
SYSTEM = ("You are the voice assistant of a smart speaker. Call exactly one tool for the "
          "user's request. Copy every argument value verbatim from what the user said; "
          "leave out arguments the user did not give.")


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _read(root: Path, relative: str) -> Any:
    if (root / relative).exists():
        return json.loads((root / relative).read_text(encoding="latin-1"))
    raw = subprocess.run(["git", "--git-dir", str(root), "show", f"HEAD:{relative}"],
                         check=True, capture_output=True).stdout
    return json.loads(raw.decode("latin-1"))


def utterances(root: Path, split: str = "train") -> list[tuple[str, str, dict[str, str]]]:
    """(intent, text, {slot: value}) per utterance of `split` (train: ~300 an intent,
    train_full: ~2,000, validate: 100); ones naming a slot twice are left out."""
    out = []
    for intent in INTENTS:
        name = {"train": f"train_{intent}.json", "train_full": f"train_{intent}_full.json"}.get(
            split, f"validate_{intent}.json")
        for row in _read(root, f"{FOLDER}/{intent}/{name}")[intent]:
            text = "".join(part["text"] for part in row["data"])
            slots: dict[str, str] = {}
            duplicate = False
            for part in row["data"]:
                if "entity" in part:
                    duplicate |= part["entity"] in slots
                    slots[part["entity"]] = part["text"].strip()
            if not duplicate and text.strip():
                out.append((intent, " ".join(text.split()), slots))
    return out


def tools(rows: list[tuple[str, str, dict[str, str]]]) -> list[dict[str, Any]]:
    """One function per intent, its parameters the slot names seen with it (all optional)."""
    params: dict[str, set[str]] = {i: set() for i in INTENTS}
    for intent, _, slots in rows:
        params[intent].update(slots)
    return [{"type": "function", "function": {
        "name": snake(intent), "description": f"Handle a {intent} request.",
        "parameters": {"type": "object", "additionalProperties": False,
                       "properties": {p: {"type": "string"} for p in sorted(params[intent])}}}}
        for intent in INTENTS]


def work_items(root: Path, split: str = "train") -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(request, teacher answer) pairs in a seeded shuffled order."""
    import random

    rows = utterances(root, "train") if split == "train" else utterances(root, split)
    all_tools = tools(utterances(root, "train"))
    random.Random(0).shuffle(rows)
    out = []
    for n, (intent, text, slots) in enumerate(rows):
        request = {"messages": [{"role": "system", "content": SYSTEM},
                                {"role": "user", "content": text}],
                   "tools": all_tools, "tool_choice": "auto", "max_tokens": 128}
        call = {"id": f"call_snips{n}", "type": "function",
                "function": {"name": snake(intent), "arguments": json.dumps(slots)}}
        out.append((request, {"role": "assistant", "content": None, "tool_calls": [call]}))
    return out
