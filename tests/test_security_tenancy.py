"""Security: one gateway key cannot steer another's tasks, the gate's evidence or the metrics.

A client names a task (X-Slimgate-Task, metadata.task) to join it; with `client_tasks =
"tenant"` (the default) the name is the key's own, so it never reaches another tenant's
student or training data. Shadow and audit sampling are keyed with a server-side secret,
so a client choosing its own `x-request-id` cannot pick which requests are compared.
`/metrics` is behind a key and labels only known tasks; failed keys are rate limited.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.app import create_app
from gateway.config import ConfigError, parse_config
from gateway.store.db import connect
from policies.router import unit_hash
from tests.fake_upstream import FakeUpstream
from tests.helpers import (
    JSON_BODY,
    KEY_A,
    KEY_B,
    METRICS_AUTH,
    ScriptedStudent,
    gateway_config,
    key_id,
    post_all,
)


def insert_task(db: str, task_id: str, stage: str, fingerprints: tuple[str, ...] = ()) -> None:
    con = connect(db)
    now = time.time()
    con.execute(
        "INSERT INTO tasks (id, label, kind, stage, explicit, info, created_at, updated_at, "
        "step, stage_since, student_version) VALUES (?, ?, 'json', ?, 1, ?, ?, ?, 0, ?, 1)",
        (task_id, task_id, stage, orjson.dumps({"fingerprints": list(fingerprints)}).decode(),
         now, now, now))
    con.close()


def _tagged(task: str) -> dict[str, Any]:
    return {**JSON_BODY, "metadata": {"task": task}}


async def test_a_key_cannot_join_another_tenants_task(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str,
) -> None:
    cfg = gateway_config(tmp_path, fresh_upstream)
    insert_task(cfg.store.path, f"{key_id(KEY_A)}.invoices", "primary")
    insert_task(cfg.store.path, "invoices", "primary")  # e.g. made under client_tasks="shared"
    student = ScriptedStudent()
    app = create_app(cfg, student_factory=lambda task, version: student)
    r_a, r_b, r_h = await post_all(app, [
        (KEY_A, _tagged("invoices"), {}),
        (KEY_B, _tagged("invoices"), {}),
        (KEY_B, JSON_BODY, {"x-slimgate-task": f"{key_id(KEY_A)}.invoices"}),
    ])
    assert r_a.headers["x-slimgate-backend"] == "student"  # A's own task
    assert r_a.headers["x-slimgate-task"] == f"{key_id(KEY_A)}.invoices"
    for r in (r_b, r_h):  # B names A's task, plainly or by its full id: B's own task instead
        assert r.status_code == 200 and r.headers["x-slimgate-backend"] == "teacher"
        assert r.headers["x-slimgate-task"].startswith(key_id(KEY_B) + ".")
    assert student.calls == 1
    con = connect(cfg.store.path)
    tasks = {row[0] for row in con.execute("SELECT task FROM exchanges")}
    con.close()
    assert "invoices" not in tasks  # no key's rows land in the unscoped task's training data


async def test_tenants_share_names_and_shared_mode_is_explicit(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str,
) -> None:
    server = {"api_keys_env": "SLIMGATE_TEST_KEYS",
              "tenants": {"acme": [key_id(KEY_A), key_id(KEY_B)]}}
    cfg = gateway_config(tmp_path, fresh_upstream, server=server)
    insert_task(cfg.store.path, "acme.invoices", "primary")
    student = ScriptedStudent()
    app = create_app(cfg, student_factory=lambda task, version: student)
    rs = await post_all(app, [(KEY_A, _tagged("invoices"), {}), (KEY_B, _tagged("invoices"), {})])
    assert [r.headers["x-slimgate-task"] for r in rs] == ["acme.invoices"] * 2
    assert student.calls == 2
    shared = parse_config({"server": {"client_tasks": "shared"}})
    assert shared.server.task_namespace(key_id(KEY_A)) is None
    with pytest.raises(ConfigError, match="tenants 'a' and 'b'"):
        parse_config({"server": {"tenants": {"a": [key_id(KEY_A)], "b": [key_id(KEY_A)]}}})
    with pytest.raises(ConfigError, match="tenant name"):
        parse_config({"server": {"tenants": {"a.b": []}}})


async def test_a_client_chosen_request_id_cannot_dodge_shadow_sampling(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str,
) -> None:
    from tests.helpers import add_task

    cfg = gateway_config(tmp_path, fresh_upstream, policy={"shadow_rate": 0.5})
    add_task(cfg.store.path, "shadow")
    # Ids that the public salt would never shadow: what an attacker would pick.
    dodging = [f"req-{i}" for i in range(400) if unit_hash(f"req-{i}", b"sg-shadow") >= 0.5]
    student = ScriptedStudent()
    app = create_app(cfg, student_factory=lambda task, version: student)
    rs = await post_all(app, [(KEY_A, JSON_BODY, {"x-request-id": rid}) for rid in dodging[:24]])
    assert all(r.status_code == 200 for r in rs)
    assert student.calls > 0  # P(no shadow in 24 at 50%) = 6e-8 with a secret key
    con = connect(cfg.store.path)
    first = con.execute("SELECT value FROM secrets WHERE name = 'sampling'").fetchone()[0]
    con.close()
    assert len(first) == 32


async def test_metrics_need_a_key_and_label_only_known_tasks(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str,
) -> None:
    cfg = gateway_config(tmp_path, fresh_upstream)
    app = create_app(cfg)
    names = [f"junk-{i}" for i in range(5)]
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://gw") as c:
        for name in names:
            await c.post("/v1/chat/completions", json=_tagged(name),
                         headers={"authorization": f"Bearer {KEY_A}"})
        anonymous = await c.get("/metrics")
        with_gateway_key = await c.get("/metrics", headers={"authorization": f"Bearer {KEY_A}"})
        text = (await c.get("/metrics", headers=METRICS_AUTH)).text
    assert anonymous.status_code == 401 and with_gateway_key.status_code == 401
    assert "junk-" not in text
    assert 'task="other"' in text
    open_cfg = gateway_config(tmp_path / "open", fresh_upstream,
                              server={"metrics_keys_env": "SLIMGATE_NO_SUCH_VAR"})
    app = create_app(open_cfg)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        r = await c.get("/metrics")
    assert r.status_code == 403 and r.json()["error"]["code"] == "metrics_disabled"


async def test_failed_keys_are_rate_limited_per_address(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLIMGATE_ADMIN_KEYS", "sk-admin-test")
    server = {"api_keys_env": "SLIMGATE_TEST_KEYS", "auth_failures_per_minute": 5}
    app = create_app(gateway_config(tmp_path, fresh_upstream, server=server))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        wrong = [await c.get("/dashboard?key=guess-" + str(i)) for i in range(3)]
        wrong += [await c.post("/v1/chat/completions", json=JSON_BODY,
                               headers={"authorization": "Bearer guess"}) for _ in range(2)]
        blocked = await c.post("/v1/chat/completions", json=JSON_BODY,
                               headers={"authorization": "Bearer guess-again"})
        blocked_admin = await c.get("/admin/tasks", headers={"authorization": "Bearer guess"})
        # valid keys from the same address (one proxy, one NAT) are never refused for it
        valid = await c.post("/v1/chat/completions", json=JSON_BODY,
                             headers={"authorization": f"Bearer {KEY_A}"})
        valid_admin = await c.get("/admin/tasks",
                                  headers={"authorization": "Bearer sk-admin-test"})
    assert [r.status_code for r in wrong] == [401] * 5
    assert blocked.status_code == 429 and blocked_admin.status_code == 429
    assert blocked.json()["error"]["code"] == "auth_rate_limited"
    assert int(blocked.headers["retry-after"]) >= 1
    assert valid.status_code == 200 and valid_admin.status_code == 200


@pytest.mark.parametrize("field", ["admin_keys_env", "metrics_keys_env"])
def test_key_env_vars_must_be_distinct(field: str) -> None:
    with pytest.raises(ConfigError, match="same variable"):
        parse_config({"server": {"api_keys_env": "K", field: "K"}})
