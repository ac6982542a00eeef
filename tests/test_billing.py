"""Issue 17 (billing), rating: calls placed with sipp through the real Asterisk to the carrier,
CDRs from its journal, rated on real PostgreSQL; every rated call recomputed here, independently,
from the CDR and the tariff."""

from __future__ import annotations

import math
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import asyncpg
import httpx
import pytest
from helpers import sql
from sip_agent import SipEndpoint

from centrex.billing.rules.rating import billing_day

pytestmark = pytest.mark.integration

TODAY = billing_day(datetime.now(UTC))


def plan(code: str, effective_from: date, bundle_s: int, tariff: list[dict], **more) -> dict:
    return {"code": code, "name": code.title(), "effective_from": effective_from.isoformat(),
            "prices_include_vat": False, "line_fee": "20.00", "bundle_s": bundle_s,
            "tariff": tariff, **more}  # fmt: skip


SOLO = [  # per-line bundle of 3 s on French fixed numbers; mobiles out of bundle
    {"prefix": "33", "per_minute": "0.0300", "connection_fee": "0.0500", "first_increment_s": 60,
     "increment_s": 60, "in_bundle": True},
    {"prefix": "336", "per_minute": "0.1500", "connection_fee": "0", "first_increment_s": 30,
     "increment_s": 1, "min_s": 10},
]  # fmt: skip
POOL = [{"prefix": "33", "per_minute": "0.0250", "connection_fee": "0.0190",
         "first_increment_s": 1, "increment_s": 1, "in_bundle": True}]  # fmt: skip


@pytest.fixture(scope="module")
def customers(api: httpx.Client, settings) -> dict[str, tuple[dict, list[SipEndpoint]]]:
    assert api.post("/v1/number-blocks", json={"first": "0234170000", "last": "0234170099"})
    created = {}
    for name, lines in (("solo", 1), ("pool", 2)):
        customer = api.post("/v1/customers", json={"name": f"Billing {name}",
                                                   "residence_country": "FR"}).json()  # fmt: skip
        api.patch(f"/v1/customers/{customer['id']}", json={"documents_verified": True})
        endpoints = []
        for _ in range(lines):
            line = api.post("/v1/lines", json={"customer_id": customer["id"], "label": name})
            wanted = {"customer_id": customer["id"], "kind": "geographic", "zone": "2"}
            number = api.post("/v1/numbers/allocate", json=wanted).json()
            api.patch(f"/v1/lines/{line.json()['id']}", json={"main_number": number["national"]})
            server = f"{settings.asterisk_host}:{settings.sip_port}"
            endpoints.append(SipEndpoint(line.json()["sip_username"],
                                         line.json()["sip_password"], server))  # fmt: skip
        created[name] = (customer, endpoints)
    return created


def _cdrs(database_url: str, customer_id: str) -> list[asyncpg.Record]:
    return sql(database_url, "SELECT * FROM cdrs WHERE customer_id = $1 AND direction = "
               "'outbound' ORDER BY start_at, id", uuid.UUID(customer_id))  # fmt: skip


def _rated(database_url: str, customer_id: str) -> dict:
    rows = sql(database_url, "SELECT * FROM billing_rated_calls WHERE customer_id = $1",
               uuid.UUID(customer_id))  # fmt: skip
    return {r["cdr_id"]: r for r in rows}


def recompute(cdrs, tariff: list[dict], bundle_s: int) -> dict:
    """The rating of each answered call from the definitions: longest prefix; the bundle
    consumed second by second in start order; the rest charged with the minimum, the increments
    and the connection fee (a call the bundle began: plain increments, no fee); half up."""
    left, out = bundle_s, {}
    for cdr in cdrs:
        if cdr["disposition"] not in ("answered", "cut") or cdr["destination"] == "emergency":
            continue
        t = max((t for t in tariff if cdr["callee"][1:].startswith(t["prefix"])),
                key=lambda t: len(t["prefix"]))  # fmt: skip
        covered = min(cdr["billed_s"], left) if t.get("in_bundle") else 0
        left -= covered
        rest = cdr["billed_s"] - covered
        first, inc = t["first_increment_s"], t["increment_s"]
        if rest and covered:
            charged, fee = math.ceil(rest / inc) * inc, Decimal(0)
        elif rest:
            seconds = max(rest, t.get("min_s", 0))
            charged = (
                first if seconds <= first else first + math.ceil((seconds - first) / inc) * inc
            )
            fee = Decimal(t["connection_fee"])
        else:
            charged, fee = 0, Decimal(0)
        cents = (Decimal(t["per_minute"]) * 100 * charged / 60 + fee * 100).quantize(
            Decimal(1), rounding=ROUND_HALF_UP)  # fmt: skip
        out[cdr["id"]] = (t["prefix"], covered, charged, int(cents))
    return out


def test_calls_through_asterisk_are_rated_once_against_the_tariff_in_force(
    api, customers, carrier, control_service, database_url, wait_until
):
    (solo, (alice,)), (pool, (bob, carol)) = customers["solo"], customers["pool"]
    for body in (plan("solo", date(2026, 1, 1), 3, SOLO),
                 plan("pool", date(2026, 1, 1), 2, POOL, bundle_pooled=True)):  # fmt: skip
        response = api.post("/v1/billing/plans", json=body)
        assert response.status_code == 201, response.text
    # A second version from tomorrow, ten times dearer: today's calls keep the first one.
    dearer = [{**t, "per_minute": str(Decimal(t["per_minute"]) * 10)} for t in SOLO]
    later = api.post("/v1/billing/plans", json=plan("solo", TODAY + timedelta(days=1), 3, dearer))
    assert later.status_code == 201 and later.json()["version"] == 2, later.text
    for customer, code in ((solo, "solo"), (pool, "pool")):
        body = {"customer_id": customer["id"], "plan_code": code, "starts_on": "2026-01-01"}
        assert api.post("/v1/billing/subscriptions", json=body).status_code == 201

    network = carrier.answer(calls=7, timeout_s=60)
    for endpoint, dialled, hold_ms in (
        (alice, "0145678901", 2000), (alice, "0145678902", 2000), (alice, "0612345678", 1200),
        (alice, "0145678901", 1000), (bob, "0145678903", 1500), (carol, "0145678904", 1500),
        (bob, "112", 500),  # emergency: free, never rated
    ):  # fmt: skip
        endpoint.call(dialled, hold_ms=hold_ms).expect_success()
    network.expect_success()

    def written() -> bool:
        return (
            len(_cdrs(database_url, solo["id"])) == 4 and len(_cdrs(database_url, pool["id"])) == 3
        )

    wait_until(written, 30, "the 7 CDRs")
    # Two rating runs at once: each call rated once (a lock per customer, a unique cdr_id).
    with ThreadPoolExecutor(2) as pool_:
        runs = list(pool_.map(lambda _: api.post("/v1/billing/rating-runs"), range(2)))
    assert [r.status_code for r in runs] == [200, 200], [r.text for r in runs]
    # 6 of ours (other modules' calls in this database may be rated with them).
    assert sum(r.json()["rated"] for r in runs) >= 6
    # Calls of other modules' customers, on no plan, may be left unpriced: ours are all rated
    # (checked call by call below).
    again = api.post("/v1/billing/rating-runs").json()
    assert again["rated"] == 0  # a re-run rates nothing twice

    for customer, tariff, bundle in ((solo, SOLO, 3), (pool, POOL, 2 * 2)):  # pooled: 2 lines
        cdrs = _cdrs(database_url, customer["id"])
        expected = recompute(cdrs, tariff, bundle)
        rated = _rated(database_url, customer["id"])
        assert set(rated) == set(expected)  # the emergency call is not there
        got = {k: (r["prefix"], r["bundle_s"], r["charged_s"], r["amount_cents"])
               for k, r in rated.items()}  # fmt: skip
        assert got == expected
        # The usage API sums the same rows.
        usage = api.get(f"/v1/customers/{customer['id']}/usage").json()
        assert usage["total"]["amount_cents"] == sum(v[3] for v in expected.values())
        assert usage["total"]["calls"] == len(expected)
    # The bundle was crossed inside a call (Alice's second, 2 s + 2 s against 3 s).
    solo_rated = _rated(database_url, solo["id"]).values()
    assert any(0 < r["bundle_s"] < r["billed_s"] for r in solo_rated), list(solo_rated)
    assert {r["plan_id"] for r in solo_rated} != {later.json()["id"]}

    csv_text = api.get(f"/v1/customers/{solo['id']}/rated-calls.csv").text
    assert len(csv_text.strip().splitlines()) == 1 + 4

    # Append-only: a rated call and a plan are never edited, a CDR is never rated twice.
    for statement in ("UPDATE billing_rated_calls SET amount_cents = 0",
                      "UPDATE billing_plans SET line_fee_cents = 0",
                      "DELETE FROM billing_tariff_lines"):  # fmt: skip
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            sql(database_url, statement)
    with pytest.raises(asyncpg.UniqueViolationError):
        sql(database_url, "INSERT INTO billing_rated_calls SELECT gen_random_uuid(), cdr_id, "
            "customer_id, line_id, period, start_at, callee, plan_id, prefix, billed_s, bundle_s,"
            " out_s, charged_s, amount_cents, vat_rate, fraud, rated_at FROM billing_rated_calls"
            " LIMIT 1")  # fmt: skip
    # The rating is in the audit trail, by the token that ran it.
    audit = api.get("/v1/audit", params={"object_type": "billing_rated_call"}).json()["items"]
    assert sum(a["after"]["calls"] for a in audit) >= 6


@pytest.mark.parametrize(
    ("change", "field", "status"),
    [
        ({"code": "Bad Code"}, "code", 422),
        ({"line_fee": "-1"}, "line_fee", 422),
        ({"line_fee": "1.0000001"}, "line_fee", 422),
        ({"tariff": [{"prefix": "033", "per_minute": "0.01"}]}, "prefix", 422),
        ({"tariff": [{"prefix": "33", "per_minute": "0.01", "increment_s": 0}]}, "increment_s",
         422),
        ({"tariff": [{"prefix": "33", "per_minute": "0.01"}] * 2}, "tariff", 400),
        ({"name": "a\u0000b"}, "name", 422),
        ({"surprise": 1}, "surprise", 422),
    ],
)  # fmt: skip
def test_a_bad_plan_is_refused_naming_the_field(api, database_url, change, field, status):
    before = sql(database_url, "SELECT count(*) FROM billing_plans")[0][0]
    body = {**plan("hostile", date(2026, 1, 1), 0, POOL), **change}
    response = api.post("/v1/billing/plans", json=body)
    assert response.status_code == status, response.text
    assert field in [str(p) for e in response.json()["detail"] for p in e["loc"]]
    assert sql(database_url, "SELECT count(*) FROM billing_plans")[0][0] == before


def test_versions_go_forward_and_subscriptions_do_not_overlap(api, customers):
    assert (
        api.post("/v1/billing/plans", json=plan("fwd", date(2026, 1, 1), 0, POOL)).status_code
        == 201
    )
    past = api.post("/v1/billing/plans", json=plan("fwd", date(2026, 2, 1), 0, POOL))
    assert past.status_code == 400 and past.json()["detail"][0]["loc"][-1] == "effective_from"
    same = api.post("/v1/billing/plans", json=plan("fwd", date(2026, 1, 1), 0, POOL))
    assert same.status_code == 409
    customer = api.post("/v1/customers", json={"name": "Subs"}).json()
    body = {"customer_id": customer["id"], "plan_code": "fwd", "starts_on": "2026-03-01"}
    assert api.post("/v1/billing/subscriptions", json=body).status_code == 201
    overlap = api.post("/v1/billing/subscriptions", json={**body, "starts_on": "2026-05-01"})
    assert overlap.status_code == 409
    unknown = api.post("/v1/billing/subscriptions", json={**body, "plan_code": "nope"})
    assert unknown.status_code == 422
