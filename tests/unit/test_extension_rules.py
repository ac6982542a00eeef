import uuid

import pytest

from centrex.core.numbering import EMERGENCY_NUMBERS, DialledKind, classify_dialled
from centrex.core.routing import Admit, LineInfo, NumberTarget, Refuse, route_call
from centrex.extensions.rules import extension_error, is_extension, next_free

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text", ["20", "200", "4711", "99999", "234567", "2999"])
def test_extensions(text):
    assert is_extension(text) and extension_error(text) is None
    assert classify_dialled(text).kind is DialledKind.extension


@pytest.mark.parametrize(
    "text", ["2", "1234567", "100", "112", "0142", "3949", "3651", "2a", "", "0"]
)
def test_not_extensions(text):
    assert not is_extension(text) and extension_error(text)


def test_no_emergency_number_can_be_an_extension():
    assert not any(is_extension(n) for n in EMERGENCY_NUMBERS)
    assert all(classify_dialled(n).kind is DialledKind.emergency for n in EMERGENCY_NUMBERS)


def test_next_free_is_the_lowest_from_200():
    assert next_free([]) == "200"
    assert next_free(["200", "201", "203"]) == "202"


def _line(name: str, customer: uuid.UUID) -> LineInfo:
    return LineInfo(uuid.uuid4(), customer, name, 2)


def test_an_extension_of_the_caller_s_customer_is_reached_on_net():
    acme = uuid.uuid4()
    caller, desk = _line("caller", acme), _line("desk", acme)
    route = route_call(caller=caller, from_trunk=False, dialled=classify_dialled("201"),
                       target=None, trunk_endpoint="trunk-x",
                       extension=NumberTarget("201", line=desk))  # fmt: skip
    assert isinstance(route, Admit)
    assert (route.dial, route.target_line, route.direction) == ("PJSIP/desk", desk, "on-net")


def test_an_unknown_extension_is_404_and_never_leaves_through_the_trunk():
    caller = _line("caller", uuid.uuid4())
    route = route_call(caller=caller, from_trunk=False, dialled=classify_dialled("201"),
                       target=None, trunk_endpoint="trunk-x", extension=None)  # fmt: skip
    assert isinstance(route, Refuse) and route.reason == "unallocated"


def test_the_trunk_cannot_dial_an_extension():
    route = route_call(caller=None, from_trunk=True, dialled=classify_dialled("201"),
                       target=None, trunk_endpoint=None)  # fmt: skip
    assert isinstance(route, Refuse) and route.reason == "unallocated"
