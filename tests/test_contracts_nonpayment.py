"""Issue 18, non-payment (art. 19) on the real platform: an invoice unpaid past its due date →
a reminder email → 15 days later the customer is suspended (a real call from its line gets 403,
112 still goes out to the carrier) with an email notice → the payment recorded through the API
lifts the suspension at once, and calls work again. The scheduler is given its instants (an
injected clock); the invoice is written as issued 30 days ago."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from sip_agent import SipEndpoint, received_invites

from centrex.config import Settings
from centrex.contracts import rules
from centrex.contracts.scheduler import run_due
from centrex.db.session import asyncpg_dsn, make_engine, make_sessionmaker

pytestmark = pytest.mark.integration

EMAIL = "accounts@nonpayment.example"


@pytest.fixture(scope="module")
def block(api: httpx.Client) -> None:
    response = api.post("/v1/number-blocks", json={"first": "0238000000", "last": "0238000099"})
    assert response.status_code == 201, response.text


def numbered_line(api: httpx.Client, settings: Settings, customer: dict):
    line = api.post("/v1/lines", json={"customer_id": customer["id"], "label": "np"}).json()
    number = api.post("/v1/numbers/allocate", json={"customer_id": customer["id"],
                      "kind": "geographic", "zone": "2"}).json()  # fmt: skip
    assert api.patch(f"/v1/lines/{line['id']}",
                     json={"main_number": number["national"]}).status_code == 200  # fmt: skip
    server = f"{settings.asterisk_host}:{settings.sip_port}"
    return line, SipEndpoint(line["sip_username"], line["sip_password"], server)


async def _insert_invoice(url: str, customer_id: str, issued, due) -> uuid.UUID:
    invoice = uuid.uuid4()
    number = 900_000 + uuid.uuid4().int % 90_000
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(
            "INSERT INTO billing_invoices (id, number, reference, kind, customer_id, buyer_name, "
            "period, issued_on, due_on, payment_method, ht_cents, vat_cents, ttc_cents, vat) "
            "VALUES ($1, $2, $3, 'invoice', $4, 'NP Co', $5, $6, $7, 'transfer', 5000, 1000, "
            "6000, '[{\"rate\": \"20.00\", \"base\": 5000, \"vat\": 1000}]')",
            invoice, number, f"NP{number}", uuid.UUID(customer_id), issued.replace(day=1),
            issued, due,
        )  # fmt: skip
        # A line, as every invoice the platform issues has (the Factur-X XSD wants one):
        # an invoice run of the same month renders this one's PDF too.
        await conn.execute(
            "INSERT INTO billing_invoice_lines (id, invoice_id, position, kind, label, quantity, "
            "unit_cents, amount_cents, vat_rate) VALUES ($1, $2, 1, 'line_fee', 'Line', 1, "
            "5000, 5000, 20.00)",
            uuid.uuid4(), invoice,
        )  # fmt: skip
    finally:
        await conn.close()
    return invoice


async def _run(url: str, settings: Settings, now: datetime) -> int:
    engine = make_engine(url)
    try:
        return await run_due(make_sessionmaker(engine), settings, now)
    finally:
        await engine.dispose()


def test_unpaid_reminded_suspended_then_payment_lifts_it_at_once(
    api, settings, database_url, block, carrier, control_service, smtp_inbox, wait_until
):
    created = api.post("/v1/customers", json={"name": "NP Co", "residence_country": "FR"}).json()
    customer = api.patch(f"/v1/customers/{created['id']}",
                         json={"documents_verified": True, "email": EMAIL}).json()  # fmt: skip
    _line, sip = numbered_line(api, settings, customer)
    # On a plan, so its calls are priced like anyone's (other modules rate this database).
    plan = {"code": "nonpay", "name": "NP", "effective_from": "2026-01-01", "line_fee": "10",
            "prices_include_vat": False,
            "tariff": [{"prefix": "33", "per_minute": "0.01"}]}  # fmt: skip
    assert api.post("/v1/billing/plans", json=plan).status_code in (201, 409)
    subscription = {"customer_id": customer["id"], "plan_code": "nonpay",
                    "starts_on": "2026-01-01"}  # fmt: skip
    assert api.post("/v1/billing/subscriptions", json=subscription).status_code == 201
    today = rules.paris_day(datetime.now(UTC))
    issued, due = today - timedelta(days=30), today - timedelta(days=20)
    invoice = asyncio.run(_insert_invoice(database_url, customer["id"], issued, due))
    steps = rules.nonpayment_steps(due)

    def restrictions() -> list[dict]:
        return api.get(f"/v1/customers/{customer['id']}/restrictions").json()

    def mails_to_us() -> list:
        return [m for m in smtp_inbox if m["To"] == EMAIL]

    # The day after the due date: the reminder, naming the suspension day; no suspension yet.
    asyncio.run(_run(database_url, settings, rules.paris_midnight(steps.reminder_on)))
    wait_until(lambda: len(mails_to_us()) == 1, 10, "the reminder email")
    (reminder,) = mails_to_us()
    assert "NP" in reminder["Subject"] and str(steps.suspension_on) in reminder.get_payload()
    assert restrictions() == []
    just_before = rules.paris_midnight(steps.suspension_on) - timedelta(seconds=1)
    asyncio.run(_run(database_url, settings, just_before))
    assert restrictions() == [] and len(mails_to_us()) == 1  # reminded once, not yet suspended

    # 15 days after the reminder: suspended, with its notice.
    asyncio.run(_run(database_url, settings, rules.paris_midnight(steps.suspension_on)))
    (suspension,) = restrictions()
    assert (suspension["level"], suspension["actor"]) == ("suspended", "non-payment")
    assert suspension["lifted_at"] is None
    wait_until(lambda: len(mails_to_us()) == 2, 10, "the suspension notice")
    assert "suspended" in mails_to_us()[1]["Subject"]
    sip.call_refused("0145678901", 403).expect_success()
    network = carrier.answer()
    sip.call("112", hold_ms=200).expect_success()
    network.expect_success()
    (invite,) = received_invites(network)
    assert "INVITE sip:112@" in invite

    # Paid in part: still suspended. Paid in full: lifted at once, calls go out again.
    part = {"invoice_id": str(invoice), "method": "transfer", "received_on": str(today)}
    assert api.post("/v1/billing/payments", json={**part, "amount_cents": 1000}).status_code == 201
    assert restrictions()[0]["lifted_at"] is None
    assert api.post("/v1/billing/payments", json={**part, "amount_cents": 5000}).status_code == 201
    (lifted,) = restrictions()
    assert lifted["lifted_at"] is not None and lifted["lifted_by"] == "non-payment"
    network = carrier.answer()
    sip.call("0145678901", hold_ms=200).expect_success()
    network.expect_success()
    # A later pass does not suspend again: the suspension step is done.
    asyncio.run(_run(database_url, settings, datetime.now(UTC)))
    assert len(restrictions()) == 1
