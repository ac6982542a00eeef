"""What every clustered test module starts for itself: Kamailio in front of two Asterisk nodes
(each with its daemon and CDR shipper) on its own loopback addresses and SIP ports, and an API
over them. One cluster per module, all in the session's one database (docs/testing.md)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from conftest import API_TOKEN
from helpers import sql
from sip_agent import SipEndpoint

from centrex.config import Settings
from centrex.sandbox.cluster import Cluster
from centrex.sandbox.postgres import free_port
from centrex.sandbox.processes import API_READY, ServiceProcess


@contextmanager
def running_cluster(
    settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    name: str,
    sip_port_step: int,
    edge_address: str,
    node_addresses: list[str],
    edge_only: bool = True,
    node_prefix: str = "n",
    **overrides: object,
) -> Iterator[Cluster]:
    """A cluster named ``name`` (its Asterisk instances, its logs), SIP on the session's port +
    ``sip_port_step`` (one step per module, so that modules' nodes never share ports or RTP
    blocks), every HTTP port free; ``overrides`` are the module's own settings."""
    offset = os.environ.get("CENTREX_TEST_PORT_OFFSET", "")
    base = settings.model_copy(
        update={
            "asterisk_instance": f"{name}{offset}",
            "sip_port": settings.sip_port + sip_port_step,
            "control_http_port": free_port(),
            "cdr_http_port": free_port(),
            "api_port": free_port(),
            "guard_http_port": 0,
            "edge_metrics_port": free_port(),
            **overrides,
        }
    )
    cluster = Cluster(
        base,
        edge_address=edge_address,
        node_addresses=node_addresses,
        log_dir=tmp_path_factory.mktemp(name),
        edge_only=edge_only,
        node_prefix=node_prefix,
    )
    # Modules share the session's database: the edge would load an earlier module's phones
    # (kamailio_location) and keep pinging their sipp ports, which later tests reuse.
    sql(settings.database_url_required, "DELETE FROM kamailio_location")
    try:
        cluster.start(fresh=True)
    except BaseException:
        cluster.stop()
        raise
    try:
        yield cluster
    finally:
        cluster.stop()


@contextmanager
def cluster_api(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    """The API over the cluster (every node's cache expired on a change), as the operator."""
    s = cluster.api_settings
    service = ServiceProcess("api", s, tmp_path_factory.mktemp(f"{s.asterisk_instance}-api"))
    service.start_and_wait(API_READY)
    try:
        with httpx.Client(
            base_url=f"http://{s.api_host}:{s.api_port}",
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=15,
        ) as client:
            yield client
    finally:
        service.stop()


def edge_line(
    capi: httpx.Client, cluster: Cluster, customer_id: str, label: str, **fields: object
) -> tuple[dict, SipEndpoint]:
    """A new line of the customer, and its phone, which talks only to Kamailio."""
    response = capi.post("/v1/lines", json={"customer_id": customer_id, "label": label, **fields})
    assert response.status_code == 201, response.text
    created = response.json()
    return created, SipEndpoint(created["sip_username"], created["sip_password"], cluster.edge)
