"""Trunks behind the SIP edge (docs/cluster.md), the pure parts: what a node is told a trunk is,
what its database connection says, which addresses it accepts SIP from."""

from __future__ import annotations

import pydantic
import pytest

from centrex.asterisk.pjsip_objects import TRUNK_HEADER, TrunkSpec, trunk_objects
from centrex.asterisk.realtime import odbc_settings
from centrex.config import Settings
from centrex.sandbox.cluster import node_settings, plan_nodes

pytestmark = pytest.mark.unit

URL = "postgresql+asyncpg://centrex_app:secret@127.0.0.1:6543/centrex_x"


def spec(edge: str | None) -> TrunkSpec:
    return TrunkSpec("op", "192.0.2.7", 5060, None, None, "10.0.0.1", edge=edge)


def by_type(edge: str | None) -> dict[str, dict[str, str]]:
    return {o.type: o.fields for o in trunk_objects(spec(edge))}


def test_behind_the_edge_a_trunk_is_its_header_and_is_reached_through_the_edge() -> None:
    objects = by_type("198.51.100.1:5060")
    # Asterisk ORs match and match_header: the address must not be there at all.
    assert objects["identify"] == {
        "endpoint": "trunk-op",
        "match_header": f"{TRUNK_HEADER}: trunk-op",
    }
    assert objects["endpoint"]["outbound_proxy"] == "sip:198.51.100.1:5060;lr"
    assert objects["aor"]["contact"] == "sip:192.0.2.7:5060"  # still where the carrier is


def test_on_one_machine_a_trunk_is_its_address() -> None:
    objects = by_type(None)
    assert objects["identify"] == {"endpoint": "trunk-op", "match": "192.0.2.7"}
    assert "outbound_proxy" not in objects["endpoint"]


def test_a_node_tells_its_views_where_the_edge_is_and_one_machine_does_not() -> None:
    base = Settings(_env_file=None, database_url=URL, asterisk_db_password="pw")
    assert "centrex.sip_edge" not in str(odbc_settings(base, "main", None)["pqopt"])
    node = base.model_copy(update={"sip_proxy": "127.0.23.1:5060"})
    assert "-c centrex.sip_edge=127.0.23.1:5060" in str(odbc_settings(node, "main", None)["pqopt"])


def test_cluster_nodes_accept_sip_from_the_edge_only_unless_told_otherwise() -> None:
    base = Settings(_env_file=None, sip_port=5060)
    plans = plan_nodes(base, ["127.0.0.11", "127.0.0.12"])
    assert node_settings(base, plans[0], "127.0.0.1:5060", []).sip_accept_from == ["127.0.0.1"]
    opened = node_settings(base, plans[0], "127.0.0.1:5060", [], edge_only=False)
    assert opened.sip_accept_from == []


@pytest.mark.parametrize("bad", ["edge.example", "127.0.0.1\npermit=0.0.0.0/0", "300.1.1.1"])
def test_only_addresses_and_networks_reach_the_acl(bad: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="an address or network expected"):
        Settings(_env_file=None, sip_accept_from=[bad])
    assert Settings(_env_file=None, sip_accept_from=["10.1.0.0/16"]).sip_accept_from
