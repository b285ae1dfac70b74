"""Gateway keys: read once from an env var, kept only as SHA-256 hashes.

A presented key is hashed and compared in constant time with every known hash; the
store and logs see only `key_id`, the first 12 hex digits of the hash.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os

from gateway.errors import Unauthorized

log = logging.getLogger("slimgate")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyRing:
    def __init__(self, keys: list[str]) -> None:
        self._hashes = [_digest(k) for k in keys if k]

    @classmethod
    def from_env(cls, env_var: str, *, warn_if_empty: bool = True) -> KeyRing:
        raw = os.environ.get(env_var, "")
        ring = cls([k.strip() for k in raw.split(",") if k.strip()])
        if not ring.enabled and warn_if_empty:
            log.warning("%s is not set: the gateway is open to anyone who can reach it", env_var)
        return ring

    @property
    def enabled(self) -> bool:
        return bool(self._hashes)

    def check(self, authorization: str | None) -> str | None:
        """Return the key id for a valid `Authorization: Bearer` header, else raise 401."""
        if not self.enabled:
            return None
        if not authorization or not authorization[:7].lower() == "bearer ":
            raise Unauthorized(
                "Missing API key: send it as 'Authorization: Bearer <key>'.", code="missing_api_key"
            )
        digest = _digest(authorization[7:].strip())
        ok = False
        for h in self._hashes:  # compare with all, so timing does not reveal which matched
            ok |= hmac.compare_digest(h, digest)
        if not ok:
            raise Unauthorized("Incorrect API key provided.")
        return digest.hex()[:12]
