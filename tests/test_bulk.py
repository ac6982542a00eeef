"""Issue 14: lines and customers in bulk, on the real API process and PostgreSQL.

The 100,000-line import runs against an API and a database of its own (no Asterisk): the
session's Asterisk would otherwise be handed 100,000 lines to load while other tests run.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from conftest import API_TOKEN
from helpers import sql
from sip_agent import SipEndpoint, free_udp_port

from centrex.config import Settings
from centrex.sandbox.postgres import free_port, scratch_database
from centrex.sandbox.processes import API_READY, ServiceProcess

pytestmark = pytest.mark.integration

HEADER = "customer_id,label,max_calls,max_call_duration_s,media_encryption\n"


class Lonely:
    def __init__(self, client: httpx.Client, database_url: str) -> None:
        self.client, self.database_url = client, database_url

    def lines(self) -> int:
        return sql(self.database_url, "SELECT count(*) FROM lines")[0][0]


@pytest.fixture(scope="module")
async def lonely(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Lonely]:
    async with scratch_database(tmp_path_factory.mktemp("pg-bulk")) as db:
        own = settings.model_copy(update={
            "database_url": db.url, "api_port": free_port(), "sip_port": free_port(),
            "ami_port": free_port(), "http_port": free_port(), "reconcile_interval_s": 3600,
        })  # fmt: skip
        service = ServiceProcess("api", own, tmp_path_factory.mktemp("bulk-logs"))
        service.start_and_wait(API_READY)
        try:
            with httpx.Client(
                base_url=f"http://{own.api_host}:{own.api_port}", timeout=300,
                headers={"Authorization": f"Bearer {API_TOKEN}"},
            ) as client:  # fmt: skip
                yield Lonely(client, db.url)
        finally:
            service.stop()


def csv_of(customer_id: str, count: int, bad_row: int | None = None) -> bytes:
    out = io.StringIO()
    out.write(HEADER)
    for n in range(1, count + 1):
        label = "" if n == bad_row else f"desk {n}"
        out.write(f"{customer_id},{label},,,\n")
    return out.getvalue().encode()


def test_100000_lines_with_one_bad_row_are_refused_whole_then_imported(lonely: Lonely):
    api = lonely.client
    customer = api.post("/v1/customers", json={"name": "Big"}).json()["id"]
    refused = api.post("/v1/lines/import", content=csv_of(customer, 100_000, bad_row=73_210),
                       headers={"Content-Type": "text/csv"})  # fmt: skip
    assert refused.status_code == 422, refused.text[:500]
    report = refused.json()
    assert report["error_count"] == 1
    assert [(e["row"], e["field"]) for e in report["errors"]] == [(73_210, "label")]
    assert lonely.lines() == 0, "a refused import wrote lines"

    started = time.monotonic()
    accepted = api.post("/v1/lines/import", content=csv_of(customer, 100_000),
                        headers={"Content-Type": "text/csv"})  # fmt: skip
    elapsed = time.monotonic() - started
    assert accepted.status_code == 201, accepted.text[:500]
    lines = accepted.json()["lines"]
    assert accepted.json()["created"] == len(lines) == 100_000 == lonely.lines()
    assert len({line["sip_username"] for line in lines}) == 100_000
    assert all(len(line["sip_password"]) >= 24 for line in lines)
    assert [line["row"] for line in lines[:3]] == [1, 2, 3]
    print(f"100,000 lines imported in {elapsed:.1f} s")  # figures: bench/provisioning.py


def test_a_long_import_tells_its_progress(lonely: Lonely):
    api = lonely.client
    customer = api.post("/v1/customers", json={"name": "Progress"}).json()["id"]
    body = [{"customer_id": customer, "label": f"l{n}"} for n in range(12_000)]
    with api.stream("POST", "/v1/lines/import", json=body,
                    headers={"Accept": "application/x-ndjson"}) as response:  # fmt: skip
        assert response.status_code == 201
        steps = [json.loads(line) for line in response.iter_lines() if line]
    assert steps[0] == {"accepted": 12_000}
    assert steps[1:4] == [{"written": n, "of": 12_000} for n in (5_000, 10_000, 12_000)]
    assert steps[4]["created"] == 12_000 and len(steps) == 5


def test_a_csv_cell_is_text_and_a_number_in_it_is_still_a_number(lonely: Lonely):
    # POST /v1/lines refuses "3" for max_calls (JSON's integers only); a CSV has only text.
    api = lonely.client
    customer = api.post("/v1/customers", json={"name": "Cells"}).json()["id"]
    response = api.post("/v1/lines/import", content=f"{HEADER}{customer},desk,3,60,\n".encode(),
                        headers={"Content-Type": "text/csv"})  # fmt: skip
    assert response.status_code == 201, response.text
    line = api.get(f"/v1/lines/{response.json()['lines'][0]['id']}").json()
    assert (line["max_calls"], line["max_call_duration_s"]) == (3, 60)
    as_json = api.post("/v1/lines/import", json=[{"customer_id": customer, "label": "d",
                                                  "max_calls": "3"}])  # fmt: skip
    assert as_json.status_code == 422
    assert [(e["row"], e["field"]) for e in as_json.json()["errors"]] == [(1, "max_calls")]


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (HEADER + "{c},ok,,,\n{c},ok,abc,,\nnot-a-uuid,ok,,,\n", "text/csv",
         [(2, "max_calls"), (3, "customer_id")]),
        (HEADER + "{c},ok,,,\n{c},ok,,,sdes_always\n", "text/csv", [(2, "media_encryption")]),
        ('[{{"customer_id": "{c}", "label": "ok"}}, {{"customer_id": "{c}", "lable": "x"}}]',
         "application/json", [(2, "label"), (2, "lable")]),
        ('[{{"customer_id": "{c}", "label": "ok"}}, 5]', "application/json", [(2, None)]),
        (HEADER + "00000000-0000-0000-0000-000000000000,ok,,,\n", "text/csv",
         [(1, "customer_id")]),
    ],
)  # fmt: skip
def test_each_bad_row_and_field_is_named_and_nothing_is_written(
    lonely: Lonely, body, content_type, expected
):
    customer = lonely.client.post("/v1/customers", json={"name": "Rows"}).json()["id"]
    before = lonely.lines()
    response = lonely.client.post("/v1/lines/import", content=body.format(c=customer).encode(),
                                  headers={"Content-Type": content_type})  # fmt: skip
    assert response.status_code == 422, response.text
    assert [(e["row"], e["field"]) for e in response.json()["errors"]] == expected
    assert lonely.lines() == before


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"customer_id,label,colour\n", "text/csv", "unknown column 'colour'"),
        (b"", "text/csv", "empty"),
        (b'{"customer_id": 1}', "application/json", "a JSON array"),
        (b"\xff\xfe", "text/csv", "not UTF-8"),
        (b"[]", "application/xml", "content type"),
        (b"[]", "application/json", "no rows"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_whole(lonely: Lonely, body, content_type, message):
    response = lonely.client.post("/v1/lines/import", content=body,
                                  headers={"Content-Type": content_type})  # fmt: skip
    assert response.status_code == 422, response.text
    assert message in response.text


def test_customers_import_and_both_exports(lonely: Lonely):
    api = lonely.client
    rows = "name,external_ref,residence_country,email\nAcme,ACME-1,FR,a@acme.test\n"
    dup = rows + "Acme bis,ACME-1,FR,\n"
    refused = api.post("/v1/customers/import", content=dup.encode(),
                       headers={"Content-Type": "text/csv"})  # fmt: skip
    assert refused.status_code == 422, refused.text
    assert [(e["row"], e["field"]) for e in refused.json()["errors"]] == [(2, "external_ref")]
    made = api.post("/v1/customers/import", content=rows.encode(),
                    headers={"Content-Type": "text/csv"})  # fmt: skip
    assert made.status_code == 201, made.text
    customer = made.json()["customers"][0]["id"]
    again = api.post("/v1/customers/import", content=rows.encode(),
                     headers={"Content-Type": "text/csv"})  # fmt: skip
    assert [(e["row"], e["field"]) for e in again.json()["errors"]] == [(1, "external_ref")]

    line = api.post("/v1/lines", json={"customer_id": customer, "label": "=HYPERLINK(1)"}).json()
    exported = api.get("/v1/lines.csv", params={"customer_id": customer})
    assert exported.status_code == 200
    (row,) = list(csv.DictReader(io.StringIO(exported.text)))
    assert row["id"] == line["id"] and row["label"] == "'=HYPERLINK(1)"
    assert line["sip_password"] not in exported.text and "ha1" not in exported.text
    customers = list(csv.DictReader(io.StringIO(api.get("/v1/customers.csv").text)))
    assert [c["external_ref"] for c in customers if c["id"] == customer] == ["ACME-1"]


def test_imported_lines_register_and_call(api, settings, control_service, wait_until):
    customer = api.post("/v1/customers", json={"name": "Imported"}).json()["id"]
    body = [{"customer_id": customer, "label": "caller"}, {"customer_id": customer, "label": "b"}]
    response = api.post("/v1/lines/import", json=body)
    assert response.status_code == 201, response.text
    server = f"{settings.asterisk_host}:{settings.sip_port}"
    caller, callee = (SipEndpoint(line["sip_username"], line["sip_password"], server)
                      for line in response.json()["lines"])  # fmt: skip
    port = free_udp_port()
    # Asterisk reads them from the database: the first REGISTER after the answer is accepted.
    callee.register(port).expect_success()
    device = callee.answer(port)
    caller.call(callee.username, hold_ms=200).expect_success()
    device.expect_success()
