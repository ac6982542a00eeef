"""The clustered shape's pure parts: dial targets through the edge, the nodes' settings."""

from __future__ import annotations

from centrex.config import Settings
from centrex.core.routing import through_proxy
from centrex.sandbox.cluster import kamailio_db_url, node_settings, plan_nodes


def test_lines_are_dialled_through_the_edge_trunks_are_not() -> None:
    edge = "127.0.19.1:5060"
    assert through_proxy("PJSIP/abc", edge) == "PJSIP/abc/sip:abc@127.0.19.1:5060"
    assert through_proxy("PJSIP/a&PJSIP/b", edge) == (
        "PJSIP/a/sip:a@127.0.19.1:5060&PJSIP/b/sip:b@127.0.19.1:5060"
    )
    assert through_proxy("PJSIP/+33612345678@trunk-x", edge) == "PJSIP/+33612345678@trunk-x"
    assert through_proxy("PJSIP/a/sip:a@elsewhere", edge) == "PJSIP/a/sip:a@elsewhere"


def test_one_node_dials_lines_directly() -> None:
    assert through_proxy("PJSIP/a&PJSIP/b", None) == "PJSIP/a&PJSIP/b"


def test_each_node_has_its_name_address_ports_and_the_others_caches() -> None:
    base = Settings(_env_file=None, sip_port=5060, asterisk_instance="main")
    plans = plan_nodes(base, ["127.0.0.11", "127.0.0.12"])
    assert [(p.name, p.address, p.sip_port) for p in plans] == [
        ("n1", "127.0.0.11", 5061),
        ("n2", "127.0.0.12", 5062),
    ]
    first = node_settings(base, plans[0], "127.0.0.1:5060", [plans[1]])
    assert first.node_name == "n1"
    assert first.asterisk_instance == "main-n1"
    assert first.sip_proxy == "127.0.0.1:5060"
    assert first.rtp_address == "127.0.0.11"
    assert first.asterisk_cache_nodes == [f"127.0.0.12:{base.ami_port}"]


def test_kamailio_reads_credentials_as_the_read_only_role() -> None:
    base = Settings(
        _env_file=None,
        database_url="postgresql+asyncpg://app:secret@db.example:6432/centrex",
        asterisk_db_password="ro-pass",
    )
    assert kamailio_db_url(base) == "postgres://centrex_asterisk:ro-pass@db.example:6432/centrex"
