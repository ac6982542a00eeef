"""The shape of an API token, pure: ``cxt_<token id>_<secret>``.

The id finds the row without the secret taking part in the lookup; the secret is then checked
against the stored sha256 in constant time. A sha256 is enough for a secret of 256 random bits
(nothing to brute-force, unlike a password).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass

PREFIX = "cxt"
SECRET_BYTES = 32
_SHAPE = re.compile(r"cxt_([0-9a-f]{32})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class IssuedToken:
    token_id: uuid.UUID
    token: str  # shown once to whoever asked for it
    secret_sha256: str  # what is stored


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token() -> IssuedToken:
    token_id = uuid.uuid4()
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return IssuedToken(token_id, f"{PREFIX}_{token_id.hex}_{secret}", secret_hash(secret))


def parse_token(presented: str) -> tuple[uuid.UUID, str] | None:
    """(token id, secret) of a well-formed token, else None."""
    match = _SHAPE.fullmatch(presented)
    if match is None:
        return None
    return uuid.UUID(hex=match[1]), match[2]


def secret_matches(secret: str, stored_sha256: str) -> bool:
    return secrets.compare_digest(secret_hash(secret).encode(), stored_sha256.encode())
