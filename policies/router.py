"""Who serves a request, and whether the other model answers it too in the background.

Canary routing is sticky: a stable hash puts each conversation (or user) in a bucket in
[0, 1), and the student serves buckets below the canary share. Raising the share only moves
more buckets to the student, never back. Shadow and audit samples hash the request id.
Every hash is keyed with a server-side secret (kept in the store), so a client that picks
its own request ids or session headers cannot predict, and so cannot steer, which requests
are shadowed, audited or sent to the student.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from policies.settings import TaskPolicy
from policies.stages import STAGES

SESSION_HEADER = "x-slimgate-session"
_STICKY_SALT = b"sg-sticky"
_SHADOW_SALT = b"sg-shadow"
_AUDIT_SALT = b"sg-audit"


@dataclass(frozen=True, slots=True)
class Route:
    serve: Literal["teacher", "student"]
    shadow: bool = False  # teacher serves; the student answers too, in the background
    audit: bool = False  # student serves; the teacher answers too, in the background


TEACHER = Route("teacher")


def unit_hash(key: str, salt: bytes, secret: bytes = b"") -> float:
    """A stable, uniform number in [0, 1) for `key`; different salts are independent, and
    without `secret` (up to 64 bytes) nobody can compute it."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8, salt=salt,
                             key=secret[:64])
    return int.from_bytes(digest.digest(), "big") / 2.0**64


def route(*, stage: str, share_percent: float, sticky_key: str, request_id: str,
          shadow_rate: float, audit_rate: float, pin: str | None, has_student: bool,
          secret: bytes = b"") -> Route:
    """Decide one request. `share_percent` only matters in canary; `audit_rate` is the rate
    for the stage at hand (the caller passes primary_audit_rate in primary); `secret` keys
    every hash (the gateway passes its own; tests may leave it empty)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    if not has_student or pin == "teacher":
        return TEACHER
    audit = unit_hash(request_id, _AUDIT_SALT, secret) < audit_rate
    if pin == "student" or stage == "primary":
        return Route("student", audit=audit)
    if stage == "observe":
        return TEACHER
    if stage == "shadow":
        return Route("teacher", shadow=unit_hash(request_id, _SHADOW_SALT, secret) < shadow_rate)
    if unit_hash(sticky_key, _STICKY_SALT, secret) < share_percent / 100.0:
        return Route("student", audit=audit)
    # Teacher-served canary traffic keeps shadowing: at a 5% share with 10% audits only 0.5%
    # of requests would be compared, and a step could wait days for its comparisons.
    return Route("teacher", shadow=unit_hash(request_id, _SHADOW_SALT, secret) < shadow_rate)


def step_share(stage: str, step: int | None, steps: Sequence[float]) -> float:
    """The student's share in percent for a stage and canary step (clamped to `steps`)."""
    if stage == "primary":
        return 100.0
    if stage != "canary" or not steps:
        return 0.0
    return float(steps[min(max(step or 0, 0), len(steps) - 1)])


def student_share(stage: str, step: int | None, steps: Sequence[float],
                  pin: str | None) -> float:
    """The share of a task's requests its student serves, in percent: a pin decides alone
    (the teacher: 0, the student: 100), else the stage and canary step (`step_share`)."""
    if pin == "teacher":
        return 0.0
    if pin == "student":
        return 100.0
    return step_share(stage, step, steps)


def canary_share(policy: TaskPolicy, stage: str, step: int | None) -> float:
    """`step_share` with the task's own canary steps."""
    return step_share(stage, step, policy.canary_steps)


def route_task(policy: TaskPolicy, *, stage: str, step: int | None, sticky_key: str,
               request_id: str, has_student: bool, secret: bytes = b"") -> Route:
    """`route` with the share and rates taken from a task's resolved policy."""
    forced = policy.pin == "student" or stage == "primary"
    return route(
        stage=stage,
        share_percent=canary_share(policy, stage, step),
        sticky_key=sticky_key,
        request_id=request_id,
        shadow_rate=policy.shadow_rate,
        audit_rate=policy.primary_audit_rate if forced else policy.audit_rate,
        pin=policy.pin,
        has_student=has_student,
        secret=secret,
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # a plain dict is case-sensitive; HTTP header names are not
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return (value.strip() or None) if value else None


def _user(request: dict[str, Any]) -> str | None:
    metadata = request.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
    for value in (request.get("user"), request.get("safety_identifier"),
                  metadata.get("user"), metadata.get("user_id")):
        if isinstance(value, str) and value:
            return value
    return None


def _conversation(request: dict[str, Any]) -> str | None:
    """A digest of the system prompt and first user message: constant over a conversation."""
    system = first_user = None
    for message in request.get("messages") or []:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if system is None and role in ("system", "developer"):
            system = message.get("content")
        if role == "user":
            first_user = message.get("content")
            break
    if first_user is None:
        return None
    text = json.dumps([system, first_user], sort_keys=True, ensure_ascii=False)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def sticky_key(request: dict[str, Any], headers: Mapping[str, str], mode: str,
               request_id: str) -> str:
    """The key that keeps related requests on one backend within a canary step.

    "user": the request's user (or metadata user); without one, falls back to the
    conversation. "conversation": the x-slimgate-session header, else a digest of the
    system prompt and first user message. Either falls back to the request id.
    """
    if mode not in ("conversation", "user", "request"):
        raise ValueError(f"unknown sticky mode {mode!r}")
    if mode == "user" and (user := _user(request)):
        return f"user:{user}"
    if mode in ("user", "conversation"):
        if session := _header(headers, SESSION_HEADER):
            return f"session:{session}"
        if digest := _conversation(request):
            return f"conv:{digest}"
    return f"request:{request_id}"
