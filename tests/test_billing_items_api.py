"""Through the real API: service-level credits (art. 11.2, 18.1), catalogue items and the
customers' subscriptions to them, and the re-rating request: written by the operator only,
audited, read by the customer concerned (another's: 404), hostile bodies refused with the
field named and nothing written. What invoices make of them: tests/test_billing_items.py and
tests/test_billing_rerating.py."""

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


def test_catalogue_items_versioned_and_subscribed(api: httpx.Client, database_url):
    today = billing_day(datetime.now(UTC))
    code = f"studio-{uuid.uuid4().hex[:6]}"
    item = {"code": code, "name": "Studio message", "category": "option", "billing": "monthly",
            "effective_from": "2026-01-01", "prices_include_vat": True, "fee": "15.00"}  # fmt: skip
    created = api.post("/v1/billing/items", json=item)
    assert created.status_code == 201, created.text
    assert (created.json()["fee_cents"], created.json()["version"]) == (1250, 1)  # 15 TTC
    for bad, field, code_ in (
        ({**item, "fee": 15.0}, "fee", 422),
        ({**item, "category": "gold"}, "category", 422),
        ({**item, "effective_from": "2026-01-01"}, "effective_from", 409),
        (
            {**item, "effective_from": (today - timedelta(days=1)).isoformat()},
            "effective_from",
            400,
        ),
    ):
        response = api.post("/v1/billing/items", json=bad)
        assert (response.status_code, field in response.text) == (code_, True), response.text
    assert len([i for i in api.get("/v1/billing/items").json() if i["code"] == code]) == 1

    owner = api.post("/v1/customers", json={"name": "Item owner"}).json()
    sub = {"customer_id": owner["id"], "item_code": code, "starts_on": "2026-02-01",
           "reference": "welcome message"}  # fmt: skip
    for bad, field in (
        ({**sub, "item_code": "nothing-here"}, "item_code"),
        ({**sub, "starts_on": "2025-12-31"}, "starts_on"),
        ({**sub, "quantity": 0}, "quantity"),
        ({**sub, "ends_on": "2026-01-15"}, "ends_on"),
    ):
        response = api.post("/v1/billing/item-subscriptions", json=bad)
        assert 400 <= response.status_code < 500 and field in response.text, response.text
    created = api.post("/v1/billing/item-subscriptions", json=sub)
    assert created.status_code == 201, created.text
    path = f"/v1/billing/item-subscriptions/{created.json()['id']}/end"
    assert api.post(path, json={"ends_on": "2026-01-31"}).status_code == 400
    ended = api.post(path, json={"ends_on": "2026-02-14"})
    assert ended.status_code == 200 and ended.json()["ends_on"] == "2026-02-14"
    assert api.post(path, json={"ends_on": "2026-02-20"}).status_code == 409
    with _token(api, owner["id"]) as customer:
        assert customer.post(path, json={"ends_on": "2026-02-20"}).status_code == 403
        mine = customer.get(f"/v1/customers/{owner['id']}/item-subscriptions")
        assert [s["ends_on"] for s in mine.json()] == ["2026-02-14"]
    entries = api.get("/v1/audit", params={"object_type": "billing_item_subscription",
                                           "object_id": created.json()["id"]})  # fmt: skip
    assert [e["change"] for e in entries.json()["items"]] == ["created", "updated"]


def test_a_rerating_request_is_the_operator_s_and_audited(api: httpx.Client):
    today = billing_day(datetime.now(UTC))
    last_month = (today.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    nxt = (today.replace(day=28) + timedelta(days=5)).strftime("%Y-%m")
    body = {"from_month": last_month, "reason": "tariff typo"}
    for bad, field in (
        ({**body, "to_month": nxt}, "to_month"),
        ({**body, "from_month": "2026-13"}, "from_month"),
        ({**body, "customer_id": str(uuid.uuid4())}, "customer_id"),
        ({**body, "reason": ""}, "reason"),
    ):
        response = api.post("/v1/billing/reratings", json=bad)
        assert 400 <= response.status_code < 500 and field in response.text, response.text
    someone = api.post("/v1/customers", json={"name": "Rerating reader"}).json()
    with _token(api, someone["id"]) as customer:
        assert customer.post("/v1/billing/reratings", json=body).status_code == 403
    created = api.post("/v1/billing/reratings", json={**body, "customer_id": someone["id"]})
    assert created.status_code == 201, created.text
    assert (created.json()["calls"], created.json()["adjustments"]) == ([], [])
    again = api.get(f"/v1/billing/reratings/{created.json()['id']}")
    assert again.status_code == 200 and again.json()["reason"] == "tariff typo"
    entries = api.get("/v1/audit", params={"object_type": "billing_rerating",
                                           "object_id": created.json()["id"]})  # fmt: skip
    assert [(e["change"], e["operation"]) for e in entries.json()["items"]] == [
        ("created", "POST /v1/billing/reratings")]  # fmt: skip
