"""The admin API: its own key, operator overrides with the audit log, validated task ids."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from tests.fake_upstream import FakeUpstream
from tests.helpers import JSON_BODY, ScriptedStudent, add_task, gateway_config


@pytest.fixture
def admin_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SLIMGATE_ADMIN_KEYS", "sk-admin-1")
    return "sk-admin-1"


async def test_admin_overrides_move_traffic_and_are_audited(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str, admin_key: str
) -> None:
    cfg = gateway_config(tmp_path, fresh_upstream, policy={"canary_steps": [50]})
    add_task(cfg.store.path, "shadow")
    app = create_app(cfg, student_factory=lambda task, version: ScriptedStudent())
    admin = {"authorization": f"Bearer {admin_key}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            # The gateway key is not an admin key.
            r = await c.post("/admin/tasks/t-orders/promote",
                             headers={"authorization": f"Bearer {keys}"})
            assert r.status_code == 401
            r = await c.post("/admin/tasks/t-orders/promote", headers=admin)
            assert r.status_code == 200 and r.json()["to_stage"] == "canary"
            r = await c.post("/admin/tasks/t-orders/promote", headers=admin,
                             json={"reason": "looks good"})
            assert r.json()["to_stage"] == "primary"
            served = await c.post("/v1/chat/completions", json=JSON_BODY,
                                  headers={"authorization": f"Bearer {keys}"})
            assert served.headers["x-slimgate-backend"] == "student"
            r = await c.post("/admin/tasks/t-orders/pin", headers=admin, json={"to": "teacher"})
            assert r.status_code == 200
            served = await c.post("/v1/chat/completions", json=JSON_BODY,
                                  headers={"authorization": f"Bearer {keys}"})
            assert served.headers["x-slimgate-backend"] == "teacher"
            refused = await c.post("/admin/tasks/t-orders/promote", headers=admin)
            log = (await c.get("/admin/audit?task=t-orders", headers=admin)).json()["data"]
            tasks = (await c.get("/admin/tasks", headers=admin)).json()["data"]
            missing = await c.post("/admin/tasks/t-nope/rollback", headers=admin)
            bad = await c.post("/admin/tasks/..%2Fetc/rollback", headers=admin)
            typo = await c.post("/admin/tasks/t-orders/pin", headers=admin, json={"too": "x"})
    assert refused.status_code == 400 and "no student" in refused.json()["error"]["message"]
    admin_id = hashlib.sha256(admin_key.encode()).hexdigest()[:12]
    assert [e["actor"] for e in log] == [f"admin:{admin_id}"] * 3  # which admin key acted
    assert [e["reason"] for e in log][1:] == ["looks good", "pinned to the teacher"]
    assert tasks[0]["id"] == "t-orders" and tasks[0]["pin"] == "teacher"
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "task_id"
    assert bad.status_code in (400, 404) and "error" in bad.json()
    assert typo.status_code == 400


async def test_admin_api_is_off_without_admin_keys(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLIMGATE_ADMIN_KEYS", raising=False)
    app = create_app(gateway_config(tmp_path, fresh_upstream))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            r = await c.get("/admin/tasks", headers={"authorization": f"Bearer {keys}"})
    assert r.status_code == 403
    assert "SLIMGATE_ADMIN_KEYS" in r.json()["error"]["message"]
