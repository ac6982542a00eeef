"""The clustered shape's pure parts: dial targets through the edge, the nodes' settings."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from centrex.config import Settings
from centrex.core.routing import through_proxy
from centrex.sandbox.asterisk import AsteriskSandbox
from centrex.sandbox.cluster import (
    Kamailio,
    kamailio_db_url,
    node_settings,
    plan_nodes,
    share_voicemail_spool,
)


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


def test_nodes_do_not_qualify_lines_the_edge_keeps_phones_alive(tmp_path: Path) -> None:
    base = Settings(_env_file=None, sip_port=5060, asterisk_instance="main", edge_keepalive_s=25)
    (plan,) = plan_nodes(base, ["127.0.0.11"])
    assert base.sip_qualify_frequency_s > 0
    assert node_settings(base, plan, "127.0.0.1:5060", []).sip_qualify_frequency_s == 0
    if not shutil.which("kamailio"):
        pytest.skip("Kamailio is not installed")
    text = Kamailio(base, tmp_path / "k", "127.0.0.1", 5060, [("127.0.0.11", 5061)]).render()
    config = text.read_text()
    assert 'modparam("nathelper", "natping_interval", 25)' in config
    assert 'modparam("nathelper", "ping_nated_only", 0)' in config
    assert 'setbflag(FLB_PING);\n\tif (!save("kamailio_location"))' in config
    off = base.model_copy(update={"edge_keepalive_s": 0})
    config = Kamailio(off, tmp_path / "o", "127.0.0.1", 5060, [("127.0.0.11", 5061)]).render()
    assert "natping_interval" not in config.read_text()


def test_every_node_records_voicemail_in_the_first_node_s_spool(tmp_path: Path) -> None:
    def sandbox(name: str) -> AsteriskSandbox:
        s = Settings(_env_file=None, asterisk_root=tmp_path / "root", var_dir=tmp_path / "var",
                     asterisk_instance=name)  # fmt: skip
        return AsteriskSandbox(s)

    first, second = sandbox("c-n1"), sandbox("c-n2")
    own = second.host_path(second.dirs.spool / "voicemail")
    own.mkdir(parents=True)
    (own / "old-message").write_text("kept")
    for _ in range(2):  # a second start changes nothing
        share_voicemail_spool(second, first)
    shared = first.host_path(first.dirs.spool / "voicemail")
    (own / "centrex").mkdir()
    assert (shared / "centrex").is_dir()
    assert not os.path.isabs(os.readlink(own))  # the same inside Asterisk's chroot
    (aside,) = own.parent.glob("voicemail.unshared-*")
    assert (aside / "old-message").read_text() == "kept"


def test_the_edge_config_checks_and_carries_the_allow_list(tmp_path) -> None:
    """Rendered with an allow-list of both families, Kamailio's own parser accepts the config,
    and each CIDR is a check of the edge route (issue 19, docs/cluster.md)."""
    if shutil.which("kamailio") is None:
        pytest.skip("Kamailio is not installed")
    base = Settings(
        _env_file=None,
        database_url="postgresql+asyncpg://app:secret@127.0.0.1:5432/centrex",
        sip_ban_allow=["192.0.2.0/24", "2001:db8::/32"],
    )
    edge = Kamailio(base, tmp_path, "127.0.22.1", 5060, [("127.0.22.11", 5061)])
    text = edge.render().read_text()
    assert 'is_in_subnet("$si", "192.0.2.0/24")' in text
    assert 'is_in_subnet("$si", "2001:db8::/32")' in text
    assert "listen=tcp:127.0.22.1:5060" in text
    check = subprocess.run(["kamailio", "-c", "-f", str(edge.config_file)], capture_output=True)
    assert check.returncode == 0, check.stderr.decode()[-2000:]
