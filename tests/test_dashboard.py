"""`/dashboard` and `/admin/report`: admin-only (403 when disabled, 401 without the key),
the session cookie a browser gets for `?key=`, and a real headless Chromium rendering the
charts (screenshot kept in tests/artifacts/dashboard.png; skipped without Chromium).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from gateway.app import create_app
from gateway.config import Config
from gateway.offline.local import free_port
from gateway.report import routes as report_routes
from tests.fake_upstream import FakeUpstream
from tests.helpers import gateway_config, running_client
from tests.helpers_report import SCRIPT, A, B, build_store
from tests.served import START_TIMEOUT_S

ADMIN = "sk-admin-test-1"
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def config(tmp_path: Path, upstream: FakeUpstream, keys: str) -> Config:
    cfg = gateway_config(tmp_path, upstream)
    build_store(Path(cfg.store.path), end=time.time())
    return cfg


def _error(r: httpx.Response) -> dict[str, str]:
    body = r.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


async def test_admin_endpoints_are_disabled_without_admin_keys(
    config: Config, keys: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLIMGATE_ADMIN_KEYS", raising=False)
    async with running_client(config) as c:
        for path in ("/admin/report", "/dashboard", f"/dashboard?key={keys}"):
            r = await c.get(path, headers={"authorization": f"Bearer {keys}"})
            assert r.status_code == 403
            err = _error(r)
            assert err["code"] == "admin_disabled" and "SLIMGATE_ADMIN_KEYS" in err["message"]


async def test_admin_key_is_required(
    config: Config, keys: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLIMGATE_ADMIN_KEYS", f"{ADMIN},sk-admin-test-2")
    async with running_client(config) as c:
        for path in ("/admin/report", "/dashboard"):
            assert (await c.get(path)).status_code == 401
            gateway_key = await c.get(path, headers={"authorization": f"Bearer {keys}"})
            assert gateway_key.status_code == 401 and _error(gateway_key)["type"]
        r = await c.get("/admin/report", headers={"authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        report = r.json()
        assert [t["id"] for t in report["tasks"]] == [A, B]  # ordered by label
        assert report["totals"]["requests"] == 1520
        page = await c.get("/dashboard", headers={"authorization": f"Bearer {ADMIN}"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src" not in page.headers["content-security-policy"]
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert f'id="agreement-{B}"' in page.text and SCRIPT not in page.text
        bad = await c.get("/admin/report?since=yesterday",
                          headers={"authorization": f"Bearer {ADMIN}"})
        assert bad.status_code == 400 and _error(bad)["param"] == "since"
        recent = await c.get("/admin/report?since=0&worst=0",
                             headers={"authorization": f"Bearer {ADMIN}"})
        assert all(t["worst"] == [] for t in recent.json()["tasks"])


async def test_report_is_built_off_the_event_loop(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLIMGATE_ADMIN_KEYS", ADMIN)
    entered, release = threading.Event(), threading.Event()
    real = report_routes.build_report

    def held_build(*args: Any, **kwargs: Any) -> dict[str, Any]:
        entered.set()
        # (on the event loop, the test could never release it: the bound ends the wait)
        assert release.wait(60), "the gateway stopped answering while the report was built"
        return real(*args, **kwargs)

    monkeypatch.setattr(report_routes, "build_report", held_build)
    async with running_client(config) as c:
        report = asyncio.create_task(
            c.get("/admin/report", headers={"authorization": f"Bearer {ADMIN}"}))
        assert await asyncio.to_thread(entered.wait, 60), "the report was never built"
        assert (await c.get("/healthz")).status_code == 200  # served while the build waits
        assert not report.done()
        release.set()
        assert (await report).status_code == 200


async def test_browser_login_sets_a_session_cookie(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLIMGATE_ADMIN_KEYS", ADMIN)
    async with running_client(config) as c:
        wrong = await c.get("/dashboard?key=sk-wrong")
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        r = await c.get(f"/dashboard?key={ADMIN}&since=30d&refresh=0")
        assert r.status_code == 303 and r.headers["location"] == "/dashboard?since=30d&refresh=0"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
        assert ADMIN not in cookie
        session = r.cookies["slimgate_admin"]
        c.cookies.clear()
        ok = await c.get("/dashboard?refresh=0", cookies={"slimgate_admin": session})
        assert ok.status_code == 200 and 'class="chart chart-timeline"' in ok.text
        assert 'http-equiv="refresh"' not in ok.text
        expires, _, sig = session.partition(".")
        forged = f"{int(expires) + 86400}.{sig}"
        c.cookies.clear()
        assert (await c.get("/dashboard", cookies={"slimgate_admin": forged})).status_code == 401


@contextmanager
def serve(config: Config) -> Iterator[str]:
    """The app with the report router on a real loopback socket, uvicorn in a thread."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + START_TIMEOUT_S  # a bound on a hang, not a measure
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-quic", "--no-first-run", "--no-proxy-server",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--window-size=1400,2000", *extra, url],
        capture_output=True, text=True, timeout=90, check=False,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                    "(apt-get install -y --no-install-recommends chromium)")
def test_dashboard_renders_in_headless_chromium(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLIMGATE_ADMIN_KEYS", ADMIN)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    with serve(config) as base:
        url = f"{base}/dashboard?key={ADMIN}&refresh=0"
        dom = _chromium(url, tmp_path / "profile", "--dump-dom")
        taken = _chromium(url, tmp_path / "profile", f"--screenshot={shot}")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    for chart in ("agreement", "timeline", "share", "latency", "cost"):
        for task in (A, B):
            assert f'id="{chart}-{task}"' in html, f"chart {chart} of {task} missing"
    assert html.count('class="segment stage-') >= 10 and 'class="gate"' in html
    assert "&lt;script&gt;alert" in html and "<script" not in html  # shown, never run
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
