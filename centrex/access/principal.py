"""The principal of an API request: which token, with which scope.

Pure: resolving a bearer token to a principal is the service's job (centrex.access.service);
what a principal may do is decided in centrex.access.rules.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

Scope = Literal["operator", "operator:read", "customer"]
SCOPES: tuple[Scope, ...] = ("operator", "operator:read", "customer")

#: The name the bootstrap token (CENTREX_API_TOKEN) acts under: it has no row of its own.
BOOTSTRAP_NAME = "bootstrap (CENTREX_API_TOKEN)"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's id (None for the bootstrap token) and name, its scope, and
    for a ``customer`` token the one customer it is bound to."""

    token_id: uuid.UUID | None
    name: str
    scope: Scope
    customer_id: uuid.UUID | None = None

    @property
    def is_operator(self) -> bool:
        return self.scope in ("operator", "operator:read")

    @property
    def rate_key(self) -> str:
        """What per-token rate limits count against."""
        return str(self.token_id) if self.token_id else "bootstrap"


def bootstrap_principal() -> Principal:
    return Principal(token_id=None, name=BOOTSTRAP_NAME, scope="operator")
