"""`store.scrub = true`: secrets and PII are replaced before a body reaches the disk."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.fake_upstream import FakeUpstream
from tests.helpers import gateway_config, running_client


async def test_bodies_are_scrubbed_at_record_time(
    tmp_path: Path, fresh_upstream: FakeUpstream, keys: str
) -> None:
    cfg = gateway_config(tmp_path, fresh_upstream, store={"path": str(tmp_path / "s.db"),
                                                          "scrub": True})
    text = "Refund jane.doe@example.com, card 4111 1111 1111 1111, key sk-abcdefghijklmnop1234"
    async with running_client(cfg) as c:
        r = await c.post("/v1/chat/completions", headers={"authorization": f"Bearer {keys}"},
                         json={"model": "gpt-test", "messages": [{"role": "user",
                                                                  "content": text}]})
        assert r.status_code == 200
        # The client still gets the real answer (the fake upstream echoes the e-mail).
        assert "jane.doe@example.com" in r.json()["choices"][0]["message"]["content"]
        await c.app.state.slimgate.recorder.flush()  # type: ignore[attr-defined]
    con = sqlite3.connect(tmp_path / "s.db")
    request, response = con.execute("SELECT request, response FROM exchanges").fetchone()
    for secret in ("jane.doe@example.com", "4111 1111 1111 1111", "sk-abcdefghijklmnop1234"):
        assert secret not in request and secret not in response
    assert "<EMAIL_1>" in request and "<EMAIL_1>" in response  # one placeholder in both
