"""Where a call to one of the platform's numbers goes: its line, a ring group, or nowhere."""

import uuid

import pytest

from centrex.core.numbering import classify_dialled
from centrex.core.routing import (
    NOT_IN_SERVICE,
    Admit,
    LineInfo,
    NumberTarget,
    Refuse,
    RingGroupInfo,
    route_call,
)

pytestmark = pytest.mark.unit

NUMBER = "+33334000001"


def line(name: str) -> LineInfo:
    return LineInfo(uuid.uuid4(), uuid.uuid4(), name, 2, main_number=None)


def route(caller: LineInfo | None, number: NumberTarget | None, dialled: str = "0334000001"):
    return route_call(
        caller=caller, from_trunk=caller is None, dialled=classify_dialled(dialled), target=None,
        trunk_endpoint="trunk-carrier", number=number,
    )  # fmt: skip


def group(*members: LineInfo, hunt: bool = False) -> RingGroupInfo:
    return RingGroupInfo(uuid.uuid4(), hunt, 20, members)


def test_an_alias_attached_to_a_line_reaches_it_inbound_and_on_net():
    bob = line("bob")
    assert route(None, NumberTarget(NUMBER, line=bob)) == Admit(
        "PJSIP/bob", target_line=bob, direction="inbound"
    )
    decision = route(line("alice"), NumberTarget(NUMBER, line=bob))
    assert isinstance(decision, Admit) and decision.direction == "on-net"


def test_a_ring_group_call_tries_every_member_but_the_caller():
    alice, bob, carol = line("alice"), line("bob"), line("carol")
    routed = group(alice, bob, carol, hunt=True)
    decision = route(bob, NumberTarget(NUMBER, group=routed))
    assert isinstance(decision, Admit) and decision.group is not None
    assert decision.group.members == (alice, carol)  # hunt order kept
    assert decision.group.hunt and decision.dial == ""  # members picked with the count
    inbound = route(None, NumberTarget(NUMBER, group=routed))
    assert isinstance(inbound, Admit) and inbound.group.members == (alice, bob, carol)


@pytest.mark.parametrize(
    "target",
    [NumberTarget(NUMBER), NumberTarget(NUMBER, group=group())],
    ids=["unattached alias", "empty group"],
)
def test_a_number_leading_nowhere_is_not_in_service(target):
    decision = route(None, target)
    assert isinstance(decision, Refuse)
    assert decision.reason == "unallocated" and decision.announcement == NOT_IN_SERVICE


def test_an_unknown_number_from_the_trunk_is_404_and_from_a_line_leaves_by_the_trunk():
    refused = route(None, None)
    assert isinstance(refused, Refuse) and refused.announcement is None
    caller = LineInfo(uuid.uuid4(), uuid.uuid4(), "alice", 2, main_number="+33334000002")
    out = route(caller, None)
    assert isinstance(out, Admit) and out.dial == "PJSIP/+33334000001@trunk-carrier"


def test_a_line_calling_its_own_alias_is_busy():
    bob = line("bob")
    decision = route(bob, NumberTarget(NUMBER, line=bob))
    assert isinstance(decision, Refuse) and decision.reason == "busy"
