"""Brute-force protection, the pure part: reading Asterisk's security events, counting failed
authentications per source address, and deciding bans (docs/sip-bans.md).

Asterisk's ``res_security_log`` writes each event as one line of ``Name="value"`` fields joined
by commas, the values **not escaped**. Several of them are the caller's own text: ``AccountID``
(the From user), ``SessionID`` (the Call-ID, where pjsip takes anything up to the end of the
line) and ``Response`` (the digest). A caller can therefore write ``",RemoteAddress="IPV4/UDP/
<anyone>/5060`` into a line. The address is taken from Asterisk's own structure instead: every
event this module counts ends with a fixed sequence of fields (``LocalAddress``,
``RemoteAddress`` and, for a challenge, Asterisk's nonce) after the caller's ``SessionID``, and
the caller's text in that tail (the digest) cannot hold a double quote (pjsip's token and
quoted-string grammar), so the line is matched **from its end**. A line whose end does not have
exactly that shape is ambiguous: it is skipped and counted, never guessed at.
"""

from __future__ import annotations

import ipaddress
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The events that are a failed credential check, one per failed attempt. ``InvalidAccountID``
#: is not counted: pjsip emits it for the first, unauthenticated request of every unknown user
#: too (twice per attempt), before the challenge; the attempt that follows with credentials is a
#: ``ChallengeResponseFailed`` and counts. Unauthenticated floods are the rate limit's business.
COUNTED_EVENTS = ("ChallengeResponseFailed", "InvalidPassword")

_PREFIX = re.compile(
    r'^\[[^\]]*\] SECURITY\[\d+\] res_security_log\.c: SecurityEvent="(?P<event>[A-Za-z]+)",'
    r'EventTV="[0-9T:.+-]*",Severity="[A-Za-z]+",Service="(?P<service>[A-Za-z0-9_]+)",'
    r'EventVersion="\d+",AccountID="'
)
_ADDR = r"IPV[46]/(?:UDP|TCP|TLS|WS|WSS)/[0-9A-Fa-f.:\[\]]+/\d+"
_ADDRESSES = rf'",LocalAddress="{_ADDR}",RemoteAddress="(?P<remote>{_ADDR})"'
# What follows RemoteAddress, per event: Asterisk's nonce, then the caller's digest, which
# cannot contain a double quote. Anchored at the end of the line, and free of ``.*``: its double
# quotes, counted from the end, leave one place where it can start.
_TAILS = {
    "ChallengeResponseFailed": re.compile(
        _ADDRESSES + r',Challenge="[0-9]*/?[0-9a-f]*",Response="[^"]*",ExpectedResponse="[^"]*"$'
    ),
    "InvalidPassword": re.compile(
        _ADDRESSES + r'(?:,Challenge="[0-9]*/?[0-9a-f]*",ReceivedChallenge="[^"]*",'
        r'ReceivedHash="[^"]*")?$'
    ),
}


@dataclass(frozen=True)
class AuthFailure:
    event: str
    address: IPAddress
    account_id: str  # the caller's text: evidence only, never trusted (see escape())


@dataclass(frozen=True)
class Skipped:
    """A security line that names a counted event but could not be read unambiguously."""

    reason: str


def parse_security_line(line: str) -> AuthFailure | Skipped | None:
    """One line of Asterisk's security log: a failed authentication, a counted event that could
    not be read (``Skipped``), or ``None`` for the events this rule does not count."""
    line = line.rstrip("\r\n")
    head = _PREFIX.match(line)
    if head is None:
        return None if "SecurityEvent=" not in line else Skipped("not a res_security_log line")
    event = head.group("event")
    if event not in COUNTED_EVENTS:
        return None
    rest = line[head.end() :]
    tail = _TAILS[event].search(rest)
    if tail is None:
        return Skipped(f"{event}: the end of the line is not Asterisk's")
    # AccountID and SessionID, both the caller's text, side by side: where one ends is a guess,
    # and only the evidence depends on it.
    account = rest[: tail.start()].split('",SessionID="', 1)[0]
    remote = tail.group("remote").split("/")
    host = remote[2].strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return Skipped(f"{event}: RemoteAddress {host!r} is not an address")
    return AuthFailure(event, address, account)


def escape(text: str, limit: int = 80) -> str:
    """A caller's text as evidence: printable ASCII kept, anything else as a ``\\x``/``\\u``
    escape, cut at ``limit`` characters; safe in a log line, JSON, a terminal."""
    out = text.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    return out if len(out) <= limit else out[:limit] + "..."


# --- the rule ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BanPolicy:
    max_failures: int = 5  # this many failures ...
    window_s: float = 600.0  # ... within this window: banned
    ban_s: float = 600.0  # a first ban's length
    max_ban_s: float = 86400.0  # a repeat offender's ban doubles up to this
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    evidence_events: int = 5  # how many of the last failures a ban keeps as evidence

    @property
    def rule(self) -> str:
        return f"{self.max_failures} failed authentications in {self.window_s:g}s"

    def allowed(self, address: IPAddress) -> bool:
        return any(address in network for network in self.allow)


def ban_seconds(policy: BanPolicy, previous_bans: int) -> float:
    """A ban's length: ``ban_s`` the first time, doubled for each earlier ban of the same address
    (the guard counts those of the last ``max_ban_s``), never more than ``max_ban_s``."""
    return min(policy.max_ban_s, policy.ban_s * 2 ** max(0, previous_bans))


@dataclass(frozen=True)
class Evidence:
    at: float
    event: str
    account_id: str  # escaped


@dataclass(frozen=True)
class BanDecision:
    address: IPAddress
    failures: int
    evidence: tuple[Evidence, ...]
    rule: str


@dataclass
class FailureCounter:
    """Failures per source address in a sliding window. ``now`` is the caller's clock (the
    guard's monotonic or wall time; the tests' own): nothing here reads a clock."""

    policy: BanPolicy
    _seen: dict[IPAddress, deque[Evidence]] = field(default_factory=dict)

    def record(self, failure: AuthFailure, now: float) -> BanDecision | Literal["allowed"] | None:
        """Count one failure; a decision once the address is past the threshold (its count then
        starts again), ``"allowed"`` for an allow-listed address, else ``None``."""
        if self.policy.allowed(failure.address):
            return "allowed"
        events = self._seen.setdefault(failure.address, deque())
        events.append(Evidence(now, failure.event, escape(failure.account_id)))
        while events and events[0].at <= now - self.policy.window_s:
            events.popleft()
        if len(events) < self.policy.max_failures:
            return None
        del self._seen[failure.address]
        kept = tuple(events)[-self.policy.evidence_events :]
        return BanDecision(failure.address, len(events), kept, self.policy.rule)

    def forget_older_than(self, now: float) -> None:
        """Drop addresses with no failure left in the window (memory stays bounded by the
        addresses seen in one window)."""
        horizon = now - self.policy.window_s
        for address in [a for a, events in self._seen.items() if events[-1].at <= horizon]:
            del self._seen[address]
