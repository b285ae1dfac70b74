"""The one rule for a task id, shared by the request path, the registry and discovery.

A task id names a directory under the students root and a Prometheus label, so it is
short, starts with a letter or digit, and holds only letters, digits, '.', '_' and '-'.
The whole string must match (`fullmatch`): a trailing newline is not a valid id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeGuard

_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


def is_task_id(value: object) -> TypeGuard[str]:
    """True for a string that is a whole, safe task id ('..' never is)."""
    return (isinstance(value, str) and _TASK_ID.fullmatch(value) is not None
            and ".." not in value)


def scoped_task(name: str, namespace: str | None) -> str:
    """The stored id of a task a client named: `<namespace>.<name>` (see
    `ServerConfig.client_tasks`). ValueError when the result is no valid task id."""
    if namespace is None:
        return name
    task_id = f"{namespace}.{name}"
    if not is_task_id(task_id):
        room = 64 - len(namespace) - 1
        raise ValueError(f"task name {name[:80]!r} is too long: this key's task names are "
                         f"stored as '{namespace}.<name>', so at most {room} characters.")
    return task_id


def task_tenant(info: Mapping[str, Any]) -> str | None:
    """The tenant whose rows a task holds, from its stored info (None: one shared
    namespace, or an open gateway). Only callers of the same namespace are ever placed in it."""
    tenant = info.get("tenant")
    return tenant if isinstance(tenant, str) else None
