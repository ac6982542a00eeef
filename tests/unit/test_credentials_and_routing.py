import hashlib
import uuid

import pytest

from centrex.core.credentials import digest_ha1, generate_credentials, generate_username
from centrex.core.routing import Admit, LineInfo, Refuse, endpoint_of_channel, route_from_line

pytestmark = pytest.mark.unit


def test_usernames_are_unambiguous_and_never_numbers():
    names = {generate_username() for _ in range(2000)}
    assert len(names) == 2000
    for name in names:
        assert len(name) == 10 and name[0].isalpha()
        assert not set(name) & set("01ilo")


def test_ha1_is_rfc2617():
    expected = hashlib.md5(b"bob:centrex:pw", usedforsecurity=False).hexdigest()
    assert digest_ha1("bob", "centrex", "pw") == expected
    creds = generate_credentials("centrex")
    assert creds.ha1 == digest_ha1(creds.username, "centrex", creds.password)
    assert len(creds.password) >= 24


def line(name: str) -> LineInfo:
    return LineInfo(uuid.uuid4(), uuid.uuid4(), name, 2)


def test_line_to_line_is_admitted():
    bob = line("b")
    assert route_from_line(line("a"), "b", bob) == Admit("PJSIP/b", bob)


@pytest.mark.parametrize(
    ("caller", "target", "reason"),
    [
        (None, line("b"), "rejected"),
        (line("a"), None, "unallocated"),
        (line("a"), line("a"), "busy"),
    ],
)
def test_refusals(caller, target, reason):
    decision = route_from_line(caller, "b", target)
    assert isinstance(decision, Refuse) and decision.reason == reason


@pytest.mark.parametrize(
    ("name", "endpoint"),
    [("PJSIP/abc-0000002a", "abc"), ("PJSIP/a-b-00000001", "a-b"), ("Local/x@y-1;1", None)],
)
def test_endpoint_of_channel(name, endpoint):
    assert endpoint_of_channel(name) == endpoint
