"""Issue 4 (trunks, provisioning part): a trunk is pushed into Asterisk and kept there.

Carriers in the tests live on other loopback addresses (127.0.0.2, .3): Asterisk recognises a
trunk's calls by source address, and the lines all speak from 127.0.0.1."""

from __future__ import annotations

import httpx
import pytest
from helpers import ari_object, delete_ari_object

pytestmark = pytest.mark.integration


def test_trunk_reaches_asterisk_and_cannot_drift(api: httpx.Client, settings):
    body = {"name": "carrier1", "host": "127.0.0.3", "port": 35999,
            "username": "centrex", "password": "s3cret"}  # fmt: skip
    response = api.post("/v1/trunks", json=body)
    assert response.status_code == 201, response.text
    trunk = response.json()
    assert "password" not in trunk
    endpoint = ari_object(settings, "endpoint", "trunk-carrier1")
    assert endpoint["context"] == "centrex-trunks"
    assert endpoint["outbound_auth"] == "trunk-carrier1"
    assert endpoint["send_pai"] == "true"
    assert ari_object(settings, "aor", "trunk-carrier1")["contact"].startswith(
        "sip:127.0.0.3:35999"
    )
    assert ari_object(settings, "identify", "trunk-carrier1")["endpoint"] == "trunk-carrier1"
    # Removed by hand over ARI: nothing changes, Asterisk reads it from the database
    # (docs/provisioning-realtime.md), which it cannot write.
    delete_ari_object(settings, "identify", "trunk-carrier1")
    assert ari_object(settings, "identify", "trunk-carrier1")["endpoint"] == "trunk-carrier1"
    assert api.post("/v1/trunks", json=body).status_code == 409
    assert api.delete(f"/v1/trunks/{trunk['id']}").status_code == 204
    assert ari_object(settings, "endpoint", "trunk-carrier1") is None
    assert ari_object(settings, "identify", "trunk-carrier1") is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Bad Name", "host": "127.0.0.1"}, "name"),
        ({"name": "t", "host": "not a host!"}, "host"),
        ({"name": "t", "host": "127.0.0.1", "port": 70000}, "port"),
        ({"name": "t", "host": "127.0.0.1", "username": "u"}, None),
    ],
)
def test_bad_trunks_are_refused(api: httpx.Client, body, field):
    response = api.post("/v1/trunks", json=body)
    assert response.status_code == 422, response.text
    locs = [e["loc"] for e in response.json()["detail"]]
    if field:
        assert ["body", field] in locs
    else:
        assert "username and password go together" in response.text
