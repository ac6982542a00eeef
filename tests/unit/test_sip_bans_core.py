"""The brute-force rule: reading Asterisk's security lines (hostile ones too), counting failures
per address with an injected clock, and repeat offenders' ban lengths."""

from __future__ import annotations

import ipaddress

import pytest

from centrex.core.sip_bans import (
    AuthFailure,
    BanDecision,
    BanPolicy,
    FailureCounter,
    Skipped,
    ban_seconds,
    escape,
    parse_security_line,
)

pytestmark = pytest.mark.unit

# Real lines from Asterisk 22.10.1 (res_security_log, logger.conf's security channel).
HEAD = (
    '[2026-12-02 17:05:41.556] SECURITY[30892] res_security_log.c: SecurityEvent="{event}",'
    'EventTV="2026-12-02T17:05:41.556+0000",Severity="Error",Service="PJSIP",EventVersion="1",'
)
FAILED = HEAD.format(event="ChallengeResponseFailed") + (
    'AccountID="{account}",SessionID="{session}",LocalAddress="IPV4/UDP/127.0.0.1/29060",'
    'RemoteAddress="IPV4/UDP/{remote}/39100",Challenge="1796231141/c6c9ef088a2cfbd8718ab28d15679de9",'
    'Response="{response}",ExpectedResponse=""'
)
FORGED = '",RemoteAddress="IPV4/UDP/127.0.0.99/5060'


def failed(account="alice", session="1-30977@127.0.0.77", remote="127.0.0.77", response="466a"):
    return FAILED.format(account=account, session=session, remote=remote, response=response)


def test_a_wrong_password_is_a_failure_from_its_remote_address():
    parsed = parse_security_line(failed())
    assert parsed == AuthFailure(
        "ChallengeResponseFailed", ipaddress.ip_address("127.0.0.77"), "alice"
    )


def test_other_events_are_not_counted():
    sent = HEAD.format(event="ChallengeSent") + (
        'AccountID="alice",SessionID="x",LocalAddress="IPV4/UDP/127.0.0.1/29060",'
        'RemoteAddress="IPV4/UDP/127.0.0.77/39100",Challenge=""'
    )
    assert parse_security_line(sent) is None
    assert parse_security_line("[2026-12-02 17:05:20.350] Asterisk 22.10.1 built by nobody") is None


@pytest.mark.parametrize(
    "field", ["account", "session"], ids=["in the AccountID", "in the SessionID (Call-ID)"]
)
def test_a_remote_address_written_by_the_caller_is_never_the_one_read(field):
    # Seen on the real Asterisk: a Call-ID carrying this text is logged as is, before the real
    # LocalAddress/RemoteAddress.
    hostile = (
        f'x{FORGED}",LocalAddress="IPV4/UDP/127.0.0.1/29060{FORGED}",Challenge="1/ab",'
        'Response="",ExpectedResponse=""'
    )
    parsed = parse_security_line(failed(**{field: hostile}))
    assert isinstance(parsed, AuthFailure)
    assert parsed.address == ipaddress.ip_address("127.0.0.77")


def test_a_line_whose_end_is_not_asteriskss_is_skipped_not_guessed():
    # A digest holding a double quote would let the caller shape the end of the line.
    assert isinstance(parse_security_line(failed(response=f"a{FORGED}")), Skipped)
    truncated = failed()[:-30]
    assert isinstance(parse_security_line(truncated), Skipped)


def test_a_forged_line_inside_a_line_does_not_start_a_line():
    forged = failed(remote="127.0.0.99")
    parsed = parse_security_line(failed(account=forged))
    assert isinstance(parsed, AuthFailure) and str(parsed.address) == "127.0.0.77"
    assert isinstance(parse_security_line("junk " + forged), Skipped)


def test_ipv6_sources():
    line = failed().replace("IPV4/UDP/127.0.0.77", "IPV6/UDP/[2001:db8::7]")
    parsed = parse_security_line(line)
    assert isinstance(parsed, AuthFailure) and str(parsed.address) == "2001:db8::7"


def test_evidence_is_escaped():
    assert escape('a"b\x1b[31m\n') == 'a\\"b\\x1b[31m\\n'
    assert escape("é") == "\\xe9"
    assert len(escape("x" * 500)) == 83


def _failure(address: str, account: str = "alice") -> AuthFailure:
    return AuthFailure("ChallengeResponseFailed", ipaddress.ip_address(address), account)


def test_banned_at_the_threshold_within_the_window():
    counter = FailureCounter(BanPolicy(max_failures=5, window_s=600))
    decisions = [counter.record(_failure("192.0.2.1", f"u{i}"), now=100 + i) for i in range(5)]
    assert decisions[:4] == [None] * 4
    ban = decisions[4]
    assert isinstance(ban, BanDecision)
    assert ban.failures == 5 and str(ban.address) == "192.0.2.1"
    assert [e.account_id for e in ban.evidence] == ["u0", "u1", "u2", "u3", "u4"]
    assert ban.rule == "5 failed authentications in 600s"
    # The count starts again after a ban.
    assert counter.record(_failure("192.0.2.1"), now=106) is None


def test_failures_older_than_the_window_do_not_count():
    counter = FailureCounter(BanPolicy(max_failures=3, window_s=60))
    assert counter.record(_failure("192.0.2.1"), now=0) is None
    assert counter.record(_failure("192.0.2.1"), now=30) is None
    assert counter.record(_failure("192.0.2.1"), now=60) is None  # the first one has left
    assert isinstance(counter.record(_failure("192.0.2.1"), now=61), BanDecision)


def test_addresses_are_counted_apart_and_the_line_is_not_what_is_counted():
    counter = FailureCounter(BanPolicy(max_failures=2, window_s=60))
    assert counter.record(_failure("192.0.2.1"), now=0) is None
    assert counter.record(_failure("192.0.2.2"), now=1) is None  # the same line, elsewhere
    assert isinstance(counter.record(_failure("192.0.2.1"), now=2), BanDecision)


def test_the_allow_list_is_never_banned():
    policy = BanPolicy(max_failures=1, allow=(ipaddress.ip_network("10.0.0.0/8"),))
    counter = FailureCounter(policy)
    assert counter.record(_failure("10.1.2.3"), now=0) == "allowed"
    assert isinstance(counter.record(_failure("11.1.2.3"), now=0), BanDecision)


def test_memory_is_bounded_by_the_window():
    counter = FailureCounter(BanPolicy(max_failures=5, window_s=10))
    for i in range(100):
        counter.record(_failure(f"192.0.2.{i}"), now=i * 0.01)
    counter.forget_older_than(now=11)
    assert counter._seen == {}


def test_repeat_offenders_are_banned_longer_up_to_a_ceiling():
    policy = BanPolicy(ban_s=600, max_ban_s=86400)
    assert [ban_seconds(policy, n) for n in range(5)] == [600, 1200, 2400, 4800, 9600]
    assert ban_seconds(policy, 20) == 86400
