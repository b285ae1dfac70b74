"""The store's one error: a store that cannot be opened, or one from a newer slimgate.

A leaf module, so that the files below the front door (`migrations`, `pg_schema`,
`pg_sync`) can raise it without importing `db`, which imports them. Everyone else imports
it from `gateway.store.db`.
"""

from __future__ import annotations


class StoreError(Exception):
    """The store cannot be opened or is from a newer slimgate."""
