"""Training data and registered students that the student tests share: templated tool and
JSON examples, copy-slotted examples, weather and timer tool calls, a store holding a task
ready to distill, and a student written into a registry and a store as the distiller would.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from gateway.config import Config, parse_config
from gateway.offline.workload import generate, to_traces
from gateway.registry import Registry
from gateway.store.catalog import StudentRecord, TaskRecord, add_student, upsert_task
from gateway.store.db import connect

# --- two templated tasks: a tool call by city, a JSON answer --------------------------------

CITY_WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object",
                                          "properties": {"city": {"type": "string"}}}}}
_FEW_CITIES = ["Paris", "Oslo", "Lima", "Rome", "Quito", "Seoul", "Dakar", "Hanoi"]


def tool_and_json_examples(n: int = 32) -> list[dict[str, Any]]:
    """Two templated tasks, alternating: a `get_weather` tool call and a JSON answer."""
    rnd = random.Random(0)
    out = []
    for i in range(n):
        city = rnd.choice(_FEW_CITIES)
        if i % 2:
            out.append({"messages": [{"role": "user", "content": f"Weather in {city}?"}],
                        "tools": [CITY_WEATHER], "response_format": None,
                        "answer": {"role": "assistant", "content": None, "tool_calls": [
                            {"id": "c", "type": "function", "function": {
                                "name": "get_weather", "arguments": json.dumps({"city": city})}}]}})
        else:
            out.append({"messages": [{"role": "system", "content": "Name the country."},
                                     {"role": "user", "content": city}],
                        "tools": None, "response_format": {"type": "json_object"},
                        "answer": {"role": "assistant", "content": json.dumps({"city": city})}})
    return out


# --- two tasks with one fixed answer each: what a few steps learn to the token -----------------

TEN_CITIES = [*_FEW_CITIES, "Cairo", "Bern"]


def weather_request(city: str) -> dict[str, Any]:
    """A tool request the fixed-answer student answers with get_weather(Paris)."""
    return {"messages": [{"role": "user", "content": f"Weather in {city}?"}],
            "tools": [CITY_WEATHER]}


def check_request(city: str) -> dict[str, Any]:
    """A JSON request the fixed-answer student answers with {"ok": true}."""
    return {"messages": [{"role": "system", "content": "Check the city."},
                         {"role": "user", "content": city}],
            "response_format": {"type": "json_object"}}


def fixed_answer_examples() -> list[dict[str, Any]]:
    """Two trivially learnable tasks, one fixed answer each, over TEN_CITIES three times."""
    call = {"id": "c", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    out = []
    for city in TEN_CITIES * 3:
        out.append({**weather_request(city), "response_format": None,
                    "answer": {"role": "assistant", "content": None, "tool_calls": [call]}})
        out.append({**check_request(city), "tools": None,
                    "answer": {"role": "assistant", "content": '{"ok": true}'}})
    return out


# --- copy-slotted examples: the copied value is `<V1>` --------------------------------------

SET_LEVEL = {"type": "function", "function": {"name": "set_level", "parameters": {
    "type": "object", "properties": {"level": {"type": "string", "enum": ["low", "high"]}},
    "required": ["level"], "additionalProperties": False}}}
NOTIFY = {"type": "function", "function": {"name": "notify", "parameters": {
    "type": "object", "properties": {"who": {"type": "string"}}, "required": ["who"]}}}
SIGNATURE = "notify,set_level|"  # the tool signature of a task asked with SET_LEVEL and NOTIFY
ASK = {"messages": [{"role": "user", "content": "Where is my order?"}]}  # none of the examples


def slotted(i: int) -> dict[str, Any]:
    """A copy-slotted example: the copied value is `<V1>` in the prompt and in the answer."""
    if i % 2:
        call = {"name": "notify", "arguments": json.dumps({"who": "<V1>"})}
        prompt = "Tell <V1> about it."
    else:
        level = ["low", "high"][i % 4 // 2]
        call = {"name": "set_level", "arguments": json.dumps({"level": level})}
        prompt = f"Set the level to {level}."
    return {"messages": [{"role": "user", "content": prompt}], "tools": [SET_LEVEL, NOTIFY],
            "response_format": None,
            "answer": {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c", "type": "function", "function": call}]}}


class TinyLora(NamedTuple):
    """A tiny local Llama (`base`, standing for a pretrained candidate) and a LoRA adapter
    trained on it (`adapter`); `method`: how train_student trained it."""

    base: Path
    adapter: Path
    method: str


def train_tiny_lora(out: Path) -> TinyLora:
    """Build the tiny Llama on 24 slotted examples (seed 1) in `out/base` and train a LoRA
    adapter on them for 4 steps of 8 in `out/adapter`."""
    from distill.chat_format import conversation, render
    from distill.scratch import build_scratch
    from distill.train import train_student
    from gateway.config import TrainingConfig

    data = [slotted(i) for i in range(24)]
    build_scratch("tiny", [render(*conversation(ex)) for ex in data], out / "base", seed=1)
    report = train_student(data, base_model=str(out / "base"), out_dir=out / "adapter",
                           cfg=TrainingConfig(max_steps=4, batch_size=8), progress=False)
    return TinyLora(out / "base", out / "adapter", report.method)


# --- weather and timer tool calls with copied arguments (the encoder student's task) ---------

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "date": {"type": "string"}}}}}
TIMER = {"type": "function", "function": {
    "name": "set_timer", "parameters": {"type": "object", "properties": {
        "minutes": {"type": "integer"}}}}}
CITIES = ["Paris", "Oslo", "Lima", "Rome", "Quito", "Seoul", "Dakar", "Hanoi", "Cairo", "Bern",
          "Tunis", "Minsk", "Accra", "Doha", "Riga", "Sofia", "Kyiv", "Baku", "Male", "Suva"]
HELD_OUT_CITIES = ["Lisbon", "Nairobi", "Ottawa", "Manila", "Bogota", "Tbilisi"]
WEATHER_ASKS = ["What's the weather in {city} on {date}?", "Will it rain in {city} on {date}?",
                "Forecast for {city}, {date} please.", "How warm is {city} going to be on {date}?"]
TIMER_ASKS = ["Set a timer for {m} minutes.", "Remind me in {m} minutes.",
              "{m} minute timer please."]


def tool_example(rng: random.Random, cities: list[str], slots: float = 0.0) -> dict[str, Any]:
    """A weather or timer request; with probability `slots` its city and date are copy-slot
    placeholders, as the copy-slot wrapper hands them to a student."""
    if rng.random() < 0.5:
        city, date = rng.choice(cities), f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        if rng.random() < slots:
            city, date = rng.sample(["<V1>", "<V2>", "<V3>"], 2)
        text, name, args = rng.choice(WEATHER_ASKS).format(city=city, date=date), \
            "get_weather", {"city": city, "date": date}
    else:
        m = rng.randint(2, 90)
        text, name, args = rng.choice(TIMER_ASKS).format(m=m), "set_timer", {"minutes": m}
    call = {"id": "call_1", "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)}}
    return {"messages": [{"role": "system", "content": "Call the right tool."},
                         {"role": "user", "content": text}],
            "tools": [WEATHER, TIMER], "response_format": None,
            "answer": {"role": "assistant", "content": None, "tool_calls": [call]}}


def request(example: dict[str, Any]) -> dict[str, Any]:
    """The request of a training example: without its answer and its unset fields."""
    return {k: v for k, v in example.items() if k != "answer" and v is not None}


# --- stores holding tasks and students --------------------------------------------------------


def store_with_task(tmp_path: Path, n: int = 80) -> tuple[Any, Any, TaskRecord]:
    """(config, open connection, task): a SQLite store holding label task `t-triage` and
    `n` teacher answers of the demo workload's ticket triage; one tiny scratch candidate."""
    cfg = parse_config({"store": {"path": str(tmp_path / "s.db")},
                        "distill": {"students_dir": str(tmp_path / "students"),
                                    "min_examples": 20, "heldout_percent": 20,
                                    "candidates": [{"model": "scratch:tiny",
                                                    "params": 2_000_000, "context": 1024}],
                                    "training": {"max_seq_len": 64}}})
    con = connect(cfg.store.path)
    task = TaskRecord(id="t-triage", label="triage", kind="label",
                      info={"prompt_tokens_p99": 300, "answer_tokens_p99": 4})
    upsert_task(con, task)
    add_teacher_rows(con, "t-triage", "ticket_triage", n, seed=2)
    return cfg, con, task


def add_teacher_rows(con: Any, task_id: str, kind: str, n: int, *, seed: int) -> None:
    """`n` teacher exchanges of one demo-workload kind, recorded under `task_id`."""
    rows = [(f"{task_id}-{i}", time.time(), "chat/completions", "m", "teacher", task_id, 0,
             orjson.dumps(t["request"]).decode(), orjson.dumps(t["response"]).decode(), 200)
            for i, t in enumerate(to_traces(generate(n, seed=seed, kinds=[kind])))]
    con.executemany("INSERT INTO exchanges (request_id, created_at, endpoint, model, backend, "
                    "task, stream, request, response, status) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)


# The held-out numbers a registered student carries (a pass at 95% agreement).
STUDENT_METRICS = {
    "n": 40, "agree": 38, "agreement": 0.95, "lower": 0.834, "upper": 0.986, "confidence": 0.95,
    "min_agreement": 0.8, "min_heldout": 30, "train_examples": 24, "heldout_examples": 6,
    "requests": 30, "repeats_judged": 2, "data_hash": "d41d8", "scrubbed": {"email": 3},
    "answer_shape": "tools", "student_kind": "generative"}


def register(cfg: Config, task: TaskRecord, version: int, files: Path, status: str,
             meta: dict[str, Any]) -> None:
    """Copy trained `files` into the registry as `task` version `version` with `meta`, and
    record the task and the student (`status`, STUDENT_METRICS) in the store."""
    registry = Registry(cfg.distill.students_dir)
    d = registry.version_dir(task.id, version)
    shutil.copytree(files, d)
    registry.write_meta(d, {"task": task.id, "version": version, **meta})
    con = connect(cfg.store)
    upsert_task(con, task)
    add_student(con, StudentRecord(task=task.id, version=version, path=registry.relative(d),
                                   base_model=meta["base_model"], status=status,
                                   metrics=STUDENT_METRICS))
    con.close()
