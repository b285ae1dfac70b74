"""Canary buckets agree across replicas: two gateways on one PostgreSQL store send each
conversation to the same backend (the bucket hash is keyed with a secret the store keeps
once for all, not one per process)."""

from __future__ import annotations

from pathlib import Path

from gateway.app import create_app
from tests.fake_upstream import FakeUpstream
from tests.helpers import JSON_BODY, ScriptedStudent, add_task, gateway_config, serve_chats
from tests.pg import pg_database


async def test_two_replicas_put_each_conversation_in_the_same_bucket(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    # 40 conversations: the sticky key is the system prompt and first user message
    conversations = [{**JSON_BODY, "messages": [JSON_BODY["messages"][0],
                                                {"role": "user", "content": f"order {i}"}]}
                     for i in range(40)]
    with pg_database() as url:
        add_task(url, "canary", step=2)  # the default steps 5, 25, 50: half the conversations
        seen = []
        for replica in ("a", "b"):
            cfg = gateway_config(tmp_path / replica, fresh_upstream, store={"url": url},
                                 policy={"audit_rate": 0.0})
            app = create_app(cfg, student_factory=lambda task, version: ScriptedStudent())
            answers = await serve_chats(app, keys, conversations)
            assert all(r.status_code == 200 for r in answers)
            seen.append([r.headers["x-slimgate-backend"] for r in answers])
    assert seen[0] == seen[1]
    assert 5 < seen[0].count("student") < 35  # both backends really in play
