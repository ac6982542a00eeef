"""SIP credentials for a line: generated, never chosen, the password never stored."""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass

# No vowels-only words, no look-alikes (0/o, 1/l/i): an operator reads these over the phone.
_USERNAME_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
USERNAME_LENGTH = 10
PASSWORD_BYTES = 18  # 144 bits of entropy, 24 URL-safe characters


@dataclass(frozen=True)
class SipCredentials:
    username: str
    password: str
    realm: str

    @property
    def ha1(self) -> str:
        return digest_ha1(self.username, self.realm, self.password)


def digest_ha1(username: str, realm: str, password: str) -> str:
    """RFC 2617 HA1: what Asterisk's ``md5_cred`` holds, so the password itself is never kept."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode(), usedforsecurity=False).hexdigest()


def generate_username() -> str:
    # Always starts with a letter: a username never looks like a phone number or a short code.
    first = secrets.choice(
        string.ascii_lowercase.replace("l", "").replace("i", "").replace("o", "")
    )
    rest = "".join(secrets.choice(_USERNAME_ALPHABET) for _ in range(USERNAME_LENGTH - 1))
    return first + rest


def generate_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def generate_credentials(realm: str) -> SipCredentials:
    return SipCredentials(generate_username(), generate_password(), realm)


def renewed_credentials(username: str, realm: str) -> SipCredentials:
    """New credentials for an existing line (art. 16, 17: lost or stolen ones are renewed).
    Only the password changes: the username names the line in CDRs, logs and Asterisk, and a
    device only needs its password re-entered."""
    return SipCredentials(username, generate_password(), realm)
