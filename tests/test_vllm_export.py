"""An exported student served by a real vLLM (CPU build): a LoRA student exported with
`--merge` is a plain model directory vLLM serves as it is, with the chat template it was
trained with, and it answers as the gateway's embedded student does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.cli import main
from gateway.config import Config, load_config
from gateway.store.catalog import TaskRecord
from tests.helpers_students import ASK, SIGNATURE, TinyLora, register
from tests.vllm_server import skip_reason, vllm_python, vllm_server


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory,
             request: pytest.FixtureRequest) -> Iterator[tuple[str, Path, Config]]:
    """The session's LoRA student of a tiny local Llama (`tiny_lora`, also exported in
    tests/test_students_export.py), exported merged and served by vLLM."""
    if vllm_python() is None:
        pytest.skip(skip_reason())
    tiny: TinyLora = request.getfixturevalue("tiny_lora")  # trained only when vLLM is here

    tmp = tmp_path_factory.mktemp("vllm-export")
    path = tmp / "config.toml"
    path.write_text(f'[store]\npath = "{tmp / "store.db"}"\n\n'
                    f'[distill]\nstudents_dir = "{tmp / "students"}"\nscrub_kinds = []\n')
    cfg = load_config(str(path))
    register(cfg, TaskRecord(id="t-levels", label="levels", kind="tool_call",
                             info={"signature": SIGNATURE}), 1, tiny.adapter, "passed",
             {"kind": "generative", "base_model": str(tiny.base),
              "copy_slots": {"enabled": False}, "candidate": {"licence": "mit"}})
    out = tmp / "export"
    assert main(["students", "export", "t-levels", "--merge", "--out", str(out),
                 "--config", str(path)]) == 0
    with vllm_server(out, tmp / "vllm.log") as url:
        yield url, out, cfg


def test_real_vllm_serves_the_merged_export_with_the_students_answers(
        exported: tuple[str, Path, Config]) -> None:
    """Token for token: an undertrained student writes bytes that are no UTF-8, which vLLM
    holds back as text, so its answers are compared as token ids."""
    from distill.chat_format import prompt_text
    from distill.student import Student
    from gateway.registry import Registry

    url, out, cfg = exported
    student = Student.load(Registry(cfg.distill.students_dir).version_dir("t-levels", 1))
    for ask in (ASK, {"messages": [{"role": "user", "content": "Set the level to high."}]}):
        enc = student.tokenizer(prompt_text(student.tokenizer, ask), return_tensors="pt",
                                add_special_tokens=False)
        ids = student.model.generate(**enc, max_new_tokens=12, do_sample=False,
                                     eos_token_id=sorted(student.stop_ids))
        want = [t for t in ids[0, enc["input_ids"].shape[1]:].tolist()
                if t not in student.stop_ids]
        resp = httpx.post(f"{url}/chat/completions", timeout=120, json={
            "model": str(out), **ask, "max_tokens": 12, "temperature": 0, "logprobs": True,
            "return_tokens_as_token_ids": True})
        assert resp.status_code == 200, resp.text
        got = [int(t["token"].removeprefix("token_id:"))
               for t in resp.json()["choices"][0]["logprobs"]["content"]]
        assert [t for t in got if t not in student.stop_ids] == want
        assert len(want) > 3  # a real answer, not an empty one
