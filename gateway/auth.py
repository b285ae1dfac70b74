"""Who is calling: gateway keys, read once from an env var and kept only as SHA-256 hashes,
and the client's address (behind trusted proxies, from X-Forwarded-For).

A presented key is hashed and compared in constant time with every known hash; the
store and logs see only `key_id`, the first 12 hex digits of the hash.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os

from starlette.requests import Request

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

    @property
    def key_ids(self) -> list[str]:
        """The key ids (what the store records) of the known keys."""
        return [h.hex()[:12] for h in self._hashes]

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


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientAddresses:
    """The client address of a request: its peer, unless the peer is a trusted proxy
    (`server.trusted_proxies`); then the right-most X-Forwarded-For entry that is not itself
    a trusted proxy, so an address the client wrote to the left of the proxy's is ignored."""

    def __init__(self, trusted_proxies: list[str]) -> None:
        self._trusted: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(c) for c in trusted_proxies)

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)

    def of(self, request: Request) -> str:
        peer = request.client.host if request.client else None
        if peer is None:
            return "unknown"
        if not self._trusted or not self._is_trusted(peer):
            return peer
        hops = ",".join(request.headers.getlist("x-forwarded-for")).split(",")
        nearest = peer  # the closest trusted hop: the answer when no entry can be believed
        for hop in reversed(hops):
            hop = hop.strip()
            if not hop:
                continue
            if self._is_trusted(hop):
                nearest = hop
                continue
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:  # garbage where a trusted proxy writes the address
                return nearest
        return nearest
