"""Issue 18 through the real API process (real clock, real PostgreSQL): who may do what on the
contract's life routes, hostile bodies refused naming the field, writes audited; the special
termination refused (409 naming the rule) then granted; a device's provisioning (a customer
reads its own, the password is never shown); directory preferences set by the customer and
the directory file, whose hostile text is never a formula."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def as_customer(api: httpx.Client):
    clients: list[httpx.Client] = []

    def make(customer_id: str) -> httpx.Client:
        body = {"name": f"life {uuid.uuid4().hex[:6]}", "scope": "customer",
                "customer_id": customer_id}  # fmt: skip
        token = api.post("/v1/tokens", json=body)
        assert token.status_code == 201, token.text
        bearer = {"Authorization": f"Bearer {token.json()['token']}"}
        client = httpx.Client(base_url=str(api.base_url), timeout=30, headers=bearer)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture(scope="module")
def tenants(api: httpx.Client) -> dict:
    """Two customers, each with a numbered line; the first named with a formula."""
    block = {"first": "0939650000", "last": "0939650019"}  # 09: no zone counted elsewhere
    assert api.post("/v1/number-blocks", json=block).status_code == 201
    made = {}
    for key, name in (("a", '=HYPERLINK("http://evil.example","x")'), ("b", "Other SARL")):
        customer = api.post("/v1/customers", json={"name": name, "residence_country": "FR"})
        customer = customer.json()
        assert api.patch(f"/v1/customers/{customer['id']}",
                         json={"documents_verified": True}).status_code == 200  # fmt: skip
        line = api.post("/v1/lines", json={"customer_id": customer["id"], "label": "desk"}).json()
        number = api.post("/v1/numbers/allocate", json={
            "customer_id": customer["id"], "kind": "non_geographic"}).json()  # fmt: skip
        assert "national" in number, number
        made[key] = {"customer": customer, "line": line, "number": number}
    return made


def audited(api: httpx.Client, object_type: str, object_id: str) -> list[dict]:
    response = api.get("/v1/audit", params={"object_type": object_type, "object_id": object_id})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def refused_field(response: httpx.Response, status: int, field: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["detail"][0]["loc"][-1] == field, response.text


def test_special_termination_refused_naming_the_rule_then_granted(api, tenants, as_customer):
    customer = tenants["b"]["customer"]["id"]
    contract = api.post("/v1/contracts", json={"customer_id": customer, "evidence": "order",
                                               "monthly_fee_cents": 3000}).json()  # fmt: skip
    now = datetime.now(UTC)
    short = api.post("/v1/interruptions", json={
        "customer_id": customer, "started_at": (now - timedelta(days=10)).isoformat(),
        "cause": "fibre cut"})  # fmt: skip
    assert short.status_code == 201, short.text
    assert audited(api, "service_interruption", short.json()["id"])  # the write is recorded
    effective = (date.today() + timedelta(days=5)).isoformat()
    ask = {"effective_on": effective, "reason": "no service", "ground": "interruption"}
    refused = api.post(f"/v1/contracts/{contract['id']}/early-termination", json=ask)
    refused_field(refused, 409, "ground")
    assert "art. 10" in refused.text and "30 consecutive days" in refused.text

    # Hostile or wrong bodies: 4xx naming the field, nothing recorded.
    refused_field(
        api.post(
            "/v1/interruptions",
            json={
                "customer_id": customer,
                "started_at": now.isoformat(),
                "ended_at": (now - timedelta(hours=1)).isoformat(),
                "cause": "x",
            },
        ),
        400,
        "ended_at",
    )
    refused_field(
        api.post(
            "/v1/interruptions",
            json={"customer_id": customer, "started_at": now.isoformat(), "cause": "a\x00b"},
        ),
        422,
        "cause",
    )
    refused_field(
        api.post(
            "/v1/interruptions",
            json={"customer_id": customer, "started_at": "yesterday", "cause": "x"},
        ),
        422,
        "started_at",
    )
    refused_field(
        api.post(
            "/v1/interruptions",
            json={
                "customer_id": customer,
                "started_at": now.isoformat(),
                "cause": "x",
                "line_ids": [tenants["a"]["line"]["id"]],
            },
        ),
        422,
        "line_ids",
    )  # another's line
    listed = api.get("/v1/interruptions", params={"customer_id": customer}).json()
    assert [i["id"] for i in listed] == [short.json()["id"]]
    # The customer reads its own interruptions; it may not record one.
    mine = as_customer(customer)
    assert [i["id"] for i in mine.get("/v1/interruptions").json()] == [short.json()["id"]]
    assert mine.post("/v1/interruptions", json={"customer_id": customer, "cause": "x",
                     "started_at": now.isoformat()}).status_code == 403  # fmt: skip

    long = api.post("/v1/interruptions", json={
        "customer_id": customer, "started_at": (now - timedelta(days=45)).isoformat(),
        "ended_at": (now - timedelta(days=14)).isoformat(), "cause": "exchange fire"})  # fmt: skip
    assert long.status_code == 201, long.text
    granted = api.post(f"/v1/contracts/{contract['id']}/early-termination", json=ask)
    assert granted.status_code == 200, granted.text
    assert granted.json()["termination_kind"] == "interruption"
    assert api.get(f"/v1/contracts/{contract['id']}/charges").json() == []


def test_provisioning_shows_the_line_account_to_its_customer_never_the_password(
    api, tenants, as_customer, settings
):
    a, b = tenants["a"], tenants["b"]
    tag = uuid.uuid4().hex[:10]
    body = {"customer_id": a["customer"]["id"], "model": "Yealink T54W", "serial": f"P{tag}",
            "mac": ":".join(tag[i : i + 2] for i in range(0, 10, 2)) + ":01", "mode": "rented",
            "value_cents": 9000, "monthly_fee_cents": 300, "provided_on": str(date.today()),
            "line_id": a["line"]["id"]}  # fmt: skip
    device = api.post("/v1/equipment", json=body)
    assert device.status_code == 201, device.text
    unbound = api.post("/v1/equipment", json={**body, "serial": f"Q{tag}", "line_id": None,
                                              "mac": body["mac"][:-2] + "02"})  # fmt: skip
    assert unbound.status_code == 201, unbound.text

    path = f"/v1/equipment/{device.json()['id']}/provisioning"
    shown = as_customer(a["customer"]["id"]).get(path)
    assert shown.status_code == 200, shown.text
    data = shown.json()
    assert data["username"] == a["line"]["sip_username"]
    assert data["server"] == f"{settings.asterisk_host}:{settings.sip_port}"
    assert data["transport"] == "udp" and data["secret"] is None
    assert a["line"]["sip_password"] not in shown.text  # never: only its digest hash is kept
    assert as_customer(b["customer"]["id"]).get(path).status_code == 404  # another's device
    refused_field(api.get(f"/v1/equipment/{unbound.json()['id']}/provisioning"), 409,
                  "equipment_id")  # fmt: skip


def test_the_customer_accepts_its_own_repair_quote_and_only_then_pays(api, tenants, as_customer):
    a, b = tenants["a"], tenants["b"]
    tag = uuid.uuid4().hex[:10]
    device = api.post("/v1/equipment", json={
        "customer_id": a["customer"]["id"], "model": "Yealink W73P", "serial": f"R{tag}",
        "mac": ":".join(tag[i : i + 2] for i in range(0, 10, 2)) + ":03", "mode": "provided",
        "value_cents": 12000, "provided_on": str(date.today())}).json()  # fmt: skip
    today = str(date.today())
    path = f"/v1/equipment/{device['id']}/repairs"
    refused_field(api.post(path, json={"reported_on": today, "cause": "lightning",
                                       "note": "storm"}), 400, "quote_cents")  # fmt: skip
    refused_field(api.post(path, json={"reported_on": today, "cause": "fire",
                                       "note": "x", "quote_cents": 1}), 422, "cause")  # fmt: skip
    quote = api.post(path, json={"reported_on": today, "cause": "lightning", "note": "storm",
                                 "quote_cents": 3900})  # fmt: skip
    assert quote.status_code == 201 and quote.json()["status"] == "quoted", quote.text
    assert audited(api, "equipment_repair", quote.json()["id"])
    customer = as_customer(a["customer"]["id"])
    assert [r["id"] for r in customer.get(path).json()] == [quote.json()["id"]]
    assert (
        customer.post(
            path, json={"reported_on": today, "cause": "inherent_defect", "note": "x"}
        ).status_code
        == 403
    )  # the operator's record
    decision = f"{path}/{quote.json()['id']}/decision"
    other = as_customer(b["customer"]["id"])
    assert other.post(decision, json={"decided_on": today, "accepted": True}).status_code == 404
    accepted = customer.post(decision, json={"decided_on": today, "accepted": True})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted" and accepted.json()["charge_id"]
    refused_field(customer.post(decision, json={"decided_on": today, "accepted": False}), 409,
                  "repair_id")  # fmt: skip


def test_directory_preferences_by_the_customer_and_the_file(api, tenants, as_customer):
    a, b = tenants["a"], tenants["b"]
    number = a["number"]["national"]
    path = f"/v1/numbers/{number}/directory"
    customer = as_customer(a["customer"]["id"])
    assert customer.get(path).json()["listed"] is False  # never chosen: not listed
    put = customer.put(path, json={"listed": True, "opposes_prospection": True})
    assert put.status_code == 200, put.text
    assert audited(api, "directory_listing", a["number"]["e164"])
    refused_field(customer.put(path, json={"listed": "maybe"}), 422, "listed")
    refused_field(customer.put(path, json={"listed": True, "listing_name": "x" * 201}), 422,
                  "listing_name")  # fmt: skip
    other = as_customer(b["customer"]["id"])
    assert other.put(path, json={"listed": False}).status_code == 404  # not its number
    assert customer.get(path).json()["opposes_prospection"] is True

    assert customer.get("/v1/directory/export.csv").status_code == 403  # the operator's file
    exported = api.get("/v1/directory/export.csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == ["number", "e164", "name", "prospection_use", "reverse_lookup"]
    mine = [row for row in rows if row[0] == number]
    name = a["customer"]["name"]
    assert mine == [[number, a["number"]["e164"], "'" + name, "refused", "allowed"]]
    assert not [row for row in rows if row[0] == b["number"]["national"]]  # not listed
