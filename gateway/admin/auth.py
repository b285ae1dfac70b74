"""Admin keys: who may open the dashboard and the admin API.

Admin keys come from the env var named by `server.admin_keys_env` (comma-separated) and are
kept as SHA-256 hashes in a `KeyRing`, like gateway keys. With none set, admin endpoints
answer 403. Browsers trade the key once for a signed, expiring session cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable
from typing import Any

from fastapi import Request

from gateway.auth import KeyRing
from gateway.errors import Forbidden, Unauthorized
from gateway.ratelimit import AuthFailures

SESSION_COOKIE = "slimgate_admin"
SESSION_SECONDS = 12 * 3600


def _admin_keys(config: Any) -> list[str]:
    raw = os.environ.get(config.server.admin_keys_env, "")
    return [k.strip() for k in raw.split(",") if k.strip()]


def admin_keyring(config: Any) -> KeyRing:
    """The admin keys named by `config.server.admin_keys_env`; `.enabled` is False when unset."""
    return KeyRing(_admin_keys(config))


class AdminAuth:
    """Checks admin credentials: `Authorization: Bearer <admin key>` or a session cookie.

    The cookie holds an expiry and an HMAC of it under a secret derived from the admin keys'
    hashes: never the key, and every session ends when the admin keys change.
    """

    def __init__(self, keys: list[str], env_var: str) -> None:
        self.ring = KeyRing(keys)
        self.env_var = env_var
        hashes = sorted(hashlib.sha256(k.encode()).digest() for k in keys)
        self._secret = hmac.new(b"slimgate-admin-session", b"".join(hashes), "sha256").digest()

    @classmethod
    def from_config(cls, config: Any) -> AdminAuth:
        return cls(_admin_keys(config), config.server.admin_keys_env)

    def _require_enabled(self) -> None:
        if not self.ring.enabled:
            raise Forbidden(
                f"The admin API is disabled until {self.env_var} is set "
                "(comma-separated admin keys, distinct from the gateway keys).",
                code="admin_disabled",
            )

    def check(self, authorization: str | None, cookie: str | None = None) -> str:
        """The caller's key id ("session" for a cookie); raises 403 when admin is disabled,
        401 when the credentials are missing or wrong."""
        self._require_enabled()
        if not authorization and cookie and self.valid_session(cookie):
            return "session"
        if not authorization:
            raise Unauthorized(
                "Missing admin key: send 'Authorization: Bearer <admin key>', or open "
                "/dashboard?key=<admin key> once in a browser.",
                code="missing_api_key",
            )
        key_id = self.ring.check(authorization)
        assert key_id is not None  # the ring is enabled
        return key_id

    def check_key(self, key: str) -> str:
        """Check a bare admin key (from the dashboard's `?key=`)."""
        return self.check(f"Bearer {key}")

    def session(self, now: float | None = None) -> str:
        """A cookie value valid for SESSION_SECONDS."""
        expires = int((time.time() if now is None else now) + SESSION_SECONDS)
        return f"{expires}.{self._sign(expires)}"

    def valid_session(self, value: str, now: float | None = None) -> bool:
        expires, _, signature = value.partition(".")
        if not expires.isdigit() or int(expires) < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(signature, self._sign(int(expires)))

    def _sign(self, expires: int) -> str:
        return hmac.new(self._secret, str(expires).encode(), "sha256").hexdigest()


def admin_auth(request: Request) -> AdminAuth:
    """The app's AdminAuth, built by the lifespan from the config (env read once per app)."""
    auth: AdminAuth = request.app.state.slimgate.admin
    return auth


def _guard(request: Request, check: Callable[[], str]) -> str:
    """Run a credential check under the per-address limit on failed attempts."""
    state = request.app.state.slimgate
    failures: AuthFailures = state.auth_failures
    return failures.guard(state.addresses.of(request), check)


def require_admin(request: Request) -> str:
    """FastAPI dependency for admin routes: the admin key id, else 401/403 in OpenAI's envelope
    (429 after too many failed attempts from one address)."""
    auth = admin_auth(request)
    return _guard(request, lambda: auth.check(
        request.headers.get("authorization"), request.cookies.get(SESSION_COOKIE)))


def check_admin_key(request: Request, key: str) -> str:
    """A bare admin key (the dashboard's `?key=`), under the same limit on failures."""
    auth = admin_auth(request)
    return _guard(request, lambda: auth.check_key(key))
