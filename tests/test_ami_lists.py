"""AMI list actions on the real Asterisk (centrex/asterisk/ami.py): a list comes back as a list,
and an error answer to a list action is raised at once as Asterisk's answer, never waited out as
a silent Asterisk. (It was: a deleted trunk's cache work asked each node for the endpoint, got
an error panoramisk never delivered, and the API's DELETE waited the AMI timeout per node; the
node also looked unavailable meanwhile.)"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from centrex.asterisk.ami import AmiClient
from centrex.asterisk.errors import AsteriskError, AsteriskUnavailable
from centrex.config import Settings
from centrex.sandbox.asterisk import AsteriskSandbox

pytestmark = pytest.mark.integration

#: Far longer than Asterisk needs to answer: only a request never delivered runs into it.
PATIENCE_S = 20


@pytest.fixture
async def ami(asterisk: AsteriskSandbox, settings: Settings) -> AsyncIterator[AmiClient]:
    client = AmiClient.from_settings(settings)
    client.start()
    try:
        await client.wait_connected(10)
        yield client
    finally:
        client.close()


async def test_an_error_answer_to_a_list_action_is_raised_as_asterisk_s_answer(ami: AmiClient):
    action = {"Action": "PJSIPShowEndpoint", "Endpoint": f"nobody-{uuid.uuid4().hex[:8]}"}
    with pytest.raises(AsteriskError) as refused:
        await ami.action(action, as_list=True, within_s=PATIENCE_S)
    assert not isinstance(refused.value, AsteriskUnavailable), refused.value
    assert "Unable to retrieve endpoint" in str(refused.value)


async def test_a_list_action_returns_its_events_and_an_empty_family_is_empty(ami: AmiClient):
    family = f"centrex-test-{uuid.uuid4().hex[:8]}"
    assert await ami.db_get_tree(family) == {}
    await ami.db_put(family, "a", "1")
    await ami.db_put(family, "b/c", "2")
    try:
        assert await ami.db_get_tree(family) == {"a": "1", "b/c": "2"}
        events = await ami.action({"Action": "DBGetTree", "Family": family}, as_list=True)
        assert isinstance(events, list)
        assert [e.get("Event") for e in events][-1] == "DBGetTreeComplete"
    finally:
        await ami.db_del(family, "a")
        await ami.db_del(family, "b/c")
