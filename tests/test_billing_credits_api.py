"""Service-level credits through the real API (art. 11.2, 18.1): recorded by the operator,
audited, read by the customer it is owed to (another's: 404), hostile bodies refused with the
field named and nothing written. Their deduction from invoices: tests/test_billing_items.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from helpers import sql

from centrex.billing.rules.rating import billing_day

pytestmark = pytest.mark.integration


def _token(api: httpx.Client, customer_id: str) -> httpx.Client:
    body = {"name": f"credits {uuid.uuid4().hex[:6]}", "scope": "customer",
            "customer_id": customer_id}  # fmt: skip
    response = api.post("/v1/tokens", json=body)
    assert response.status_code == 201, response.text
    bearer = {"Authorization": f"Bearer {response.json()['token']}"}
    return httpx.Client(base_url=str(api.base_url), timeout=30, headers=bearer)


def test_credits_recorded_audited_and_read_by_their_customer(api: httpx.Client, database_url):
    owed = api.post("/v1/customers", json={"name": "Credit owed"}).json()
    other = api.post("/v1/customers", json={"name": "Credit other"}).json()
    today = billing_day(datetime.now(UTC))
    body = {"customer_id": owed["id"], "amount_ht_cents": 2500, "reason": "outage of 2 Dec",
            "interruption_id": str(uuid.uuid4())}  # fmt: skip
    count = "SELECT count(*) FROM billing_service_credits"
    before = sql(database_url, count)[0][0]
    for bad, field in (
        ({**body, "amount_ht_cents": 0}, "amount_ht_cents"),
        ({**body, "amount_ht_cents": "25.00"}, "amount_ht_cents"),
        ({**body, "vat_rate": 20}, "vat_rate"),
        ({**body, "reason": ""}, "reason"),
        ({**body, "granted_on": (today + timedelta(days=1)).isoformat()}, "granted_on"),
        ({**body, "customer_id": str(uuid.uuid4())}, "customer_id"),
        ({**body, "invoice_id": str(uuid.uuid4())}, "invoice_id"),
    ):
        response = api.post("/v1/billing/service-credits", json=bad)
        assert 400 <= response.status_code < 500 and field in response.text, (bad, response.text)
    assert sql(database_url, count)[0][0] == before

    with _token(api, owed["id"]) as customer, _token(api, other["id"]) as stranger:
        assert customer.post("/v1/billing/service-credits", json=body).status_code == 403
        created = api.post("/v1/billing/service-credits", json=body)
        assert created.status_code == 201, created.text
        credit = created.json()
        assert (credit["left_cents"], credit["uses"], credit["granted_on"]) == (
            2500, [], today.isoformat())  # fmt: skip
        mine = customer.get(f"/v1/customers/{owed['id']}/service-credits")
        assert mine.status_code == 200 and [c["id"] for c in mine.json()] == [credit["id"]]
        assert stranger.get(f"/v1/customers/{owed['id']}/service-credits").status_code == 404
    entries = api.get("/v1/audit", params={"object_type": "billing_service_credit",
                                           "object_id": credit["id"]})  # fmt: skip
    assert entries.status_code == 200, entries.text
    assert [(e["change"], e["operation"]) for e in entries.json()["items"]] == [
        ("created", "POST /v1/billing/service-credits")]  # fmt: skip
