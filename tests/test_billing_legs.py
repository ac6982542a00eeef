"""Issue 17 (billing), the legs of a call other than its caller's outbound call, rated to the
line that pays each (docs/billing.md, "Rating"; docs/transfers.md, "Who pays"): an outside
forward is the forwarding line's outbound call; a transfer to an outside number is the
transferer's, whether its transferee is one of our lines or an outside caller; the call to the
forwarding line itself, the outside caller's call in, on-net calls are nobody's. Real calls:
sipp phones and carrier through the real Asterisk, CDRs from the real CDR pipeline, then the
rating pass; every rated row recomputed here from the CDRs and the tariff, with the payer
rules written again independently."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

import httpx
import pytest
from feature_phones import make_company, set_features
from helpers import sql
from sip_agent import _scenario, free_udp_port, run_sipp
from test_billing_invoices import in_process

from centrex.billing.rating import rate_customer
from centrex.billing.rules.rating import billing_month

pytestmark = pytest.mark.integration

TARIFF = {"33": (Decimal("0.05"), Decimal("0.10")), "44": (Decimal("0.30"), Decimal("0.20"))}
TARIFF_LINES = [
    {"prefix": p, "per_minute": str(m), "connection_fee": str(c), "min_s": 60,
     "first_increment_s": 60, "increment_s": 60} for p, (m, c) in TARIFF.items()
]  # fmt: skip
PLAN = {"code": "legs", "name": "Legs", "effective_from": "2026-01-01",
        "prices_include_vat": False, "line_fee": "10.00", "bundle_s": 0,
        "tariff": TARIFF_LINES}  # fmt: skip
FORWARD_TO, TRANSFER_TO, OUTSIDE_CALLER = "+33145678901", "+442079460123", "+33611223344"


@pytest.fixture(scope="module")
def company(api: httpx.Client, settings):
    assert api.post("/v1/number-blocks", json={"first": "0236500000", "last": "0236500099"})
    assert api.post("/v1/billing/plans", json=PLAN).status_code == 201
    api.post("/v1/destinations", json={"code": "44"})
    phones = make_company(api, settings, "Legs")
    body = {"customer_id": phones.customer_id, "plan_code": "legs",
            "starts_on": billing_month(datetime.now(UTC)).isoformat()}  # fmt: skip
    assert api.post("/v1/billing/subscriptions", json=body).status_code == 201
    return phones


def cdrs_of(database_url: str, *line_ids: str) -> list[dict]:
    rows = sql(database_url, "SELECT * FROM cdrs WHERE caller_line_id = ANY($1::uuid[]) OR "
               "callee_line_id = ANY($1::uuid[]) OR paid_by_line_id = ANY($1::uuid[])",
               list(line_ids))  # fmt: skip
    return [dict(r) for r in rows]


def expected(cdr: dict) -> tuple[str, str, int] | None:
    """Who pays this record, for which number, how much (cents HT): the documented rules,
    written again. No bundle: each leg priced from its first second, 60/60, a minimum of 60 s,
    the connection fee once."""
    if cdr["disposition"] not in ("answered", "cut") or not cdr["billed_s"]:
        return None
    if cdr["paid_by_line_id"] is not None:  # a transferred part: its payer, its outside leg
        payer = cdr["paid_by_line_id"]
        number = cdr["callee"] if cdr["direction"] == "outbound" else cdr["caller"]
    elif cdr["direction"] == "outbound" and cdr["caller_line_id"] is not None:
        payer, number = cdr["caller_line_id"], cdr["callee"]  # a call out, or a forward's leg
    else:
        return None
    per_minute, connection = TARIFF[number[1:3]]
    minutes = math.ceil(max(cdr["billed_s"], 60) / 60)
    cents = (connection + per_minute * minutes) * 100
    return str(payer), number, int(cents.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def test_forward_and_transfer_legs_are_rated_to_the_line_that_pays_them(
    api, company, carrier, control_service, database_url, wait_until
):
    # Alice calls Bob, who forwards everything outside: Bob pays the forward, Alice nothing.
    alice, bob = company(), company(register=False)
    set_features(api, bob, forward_unconditional="01 45 67 89 01")
    network = carrier.answer(timeout_s=30)
    alice.sip.call(bob.national, hold_ms=1500).expect_success()
    network.expect_success(timeout=30)
    # Carol calls Dave, who sends her to an outside number: Dave pays that leg.
    carol, dave = company(), company(register=False)
    network = carrier.answer(timeout_s=30)
    port = free_udp_port()
    dave.sip.register(port).expect_success()
    transferer = dave.sip.answer_and_transfer(port, TRANSFER_TO)
    carol.sip.call(dave.national, hold_ms=4000).expect_success()
    transferer.expect_success()
    network.expect_success(timeout=90)
    # An outside caller calls Erin, who sends the call on outside: Erin pays the leg out.
    erin = company(register=False)
    network = carrier.answer(timeout_s=30)
    port = free_udp_port()
    erin.sip.register(port).expect_success()
    transferer = erin.sip.answer_and_transfer(port, TRANSFER_TO)
    # (Asterisk re-INVITEs the outside caller's leg when the target answers: a scenario that
    # answers it.)
    run_sipp(_scenario("uac_noauth_transferred.xml"), carrier.server, service=erin.number,
             local_ip=carrier.ip, keys={"caller": OUTSIDE_CALLER},
             extra=["-d", "4000"]).expect_success()  # fmt: skip
    transferer.expect_success()
    network.expect_success(timeout=90)

    ids = [p.id for p in (alice, bob, carol, dave, erin)]
    # Every record written: the forwarded call and its leg, two parts of each transferred call.
    wait_until(lambda: len(cdrs_of(database_url, *ids)) >= 6, 30, "the calls' CDRs")
    cdrs = cdrs_of(database_url, *ids)
    rating = in_process(database_url, lambda s: rate_customer(s, company.customer_id))
    assert rating.unpriced == []
    rated = sql(database_url, "SELECT cdr_id, line_id::text AS line, callee, amount_cents, "
                "billed_s FROM billing_rated_calls WHERE customer_id = $1::uuid",
                company.customer_id)  # fmt: skip
    got = {r["cdr_id"]: (r["line"], r["callee"], r["amount_cents"]) for r in rated}
    want = {c["id"]: e for c in cdrs if (e := expected(c)) is not None}
    assert got == want, (got, want, cdrs)
    # The three paid legs, each on its payer, and nothing on Alice, Carol or the outside caller.
    assert sorted((line, number) for line, number, _ in got.values()) == sorted(
        [(bob.id, FORWARD_TO), (dave.id, TRANSFER_TO), (erin.id, TRANSFER_TO)])  # fmt: skip
    # 1.5 s held: the 60 s minimum, one minute and the connection fee (the increments past a
    # minute: tests/unit/test_billing_rules.py and test_billing.py's calls through Asterisk).
    forward_leg = next(r for r in rated if r["line"] == bob.id)
    assert 0 < forward_leg["billed_s"] < 60
    assert got[forward_leg["cdr_id"]][2] == 10 + 5
    # Rated once: a second pass rates nothing.
    again = in_process(database_url, lambda s: rate_customer(s, company.customer_id))
    assert again.rated == 0
