"""An invoice whose PDF cannot be made does not stop a run's archiving: the others are
archived (then emailed by the run), the failure is counted
(``centrex_billing_documents_total{outcome="failed"}``) and logged, and the next run tries it
again.

Invoices are written straight into the table here (one without any line, which the Factur-X
schema refuses; one ordinary), with numbers far from the sequence the billing tests check:
this file runs after them (the name sorts after test_contracts_nonpayment.py, which does the
same)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date

import pytest
from helpers import sql

from centrex import metrics
from centrex.billing.invoicing import archive_documents, seller_of
from centrex.db.session import make_engine, make_sessionmaker

pytestmark = pytest.mark.integration

PERIOD = date(2000, 1, 1)  # a month no subscription of the other tests reaches


def forged_invoice(database_url: str, customer_id: str, *, with_line: bool) -> str:
    invoice, number = uuid.uuid4(), 800_000 + uuid.uuid4().int % 90_000
    sql(
        database_url,
        "INSERT INTO billing_invoices (id, number, reference, kind, customer_id, buyer_name, "
        "period, issued_on, due_on, payment_method, ht_cents, vat_cents, ttc_cents, vat) "
        "VALUES ($1, $2, $3, 'invoice', $4, 'Archive Co', $5, $6, $7, 'transfer', 5000, 1000, "
        "6000, '[{\"rate\": \"20.00\", \"base\": 5000, \"vat\": 1000}]')",
        invoice, number, f"AR{number}", uuid.UUID(customer_id), PERIOD, date(2000, 2, 1),
        date(2000, 2, 11),
    )  # fmt: skip
    if with_line:
        sql(
            database_url,
            "INSERT INTO billing_invoice_lines (id, invoice_id, position, kind, label, "
            "quantity, unit_cents, amount_cents, vat_rate) VALUES ($1, $2, 1, 'line_fee', "
            "'Line', 1, 5000, 5000, 20.00)",
            uuid.uuid4(), invoice,
        )  # fmt: skip
    return str(invoice)


def test_a_pdf_that_cannot_be_made_leaves_the_other_invoices_archived(
    api, database_url, settings, caplog
):
    first, second = (api.post("/v1/customers", json={"name": "Archive Co"}).json() for _ in "12")
    broken = forged_invoice(database_url, first["id"], with_line=False)
    good = forged_invoice(database_url, second["id"], with_line=True)
    failed = metrics.BILLING_DOCUMENTS.labels("failed")

    # The archiving step of an invoice run, in this process: a run through the API would also
    # invoice whatever the other tests left due, and its date may be before theirs.
    async def archive() -> int:
        engine = make_engine(database_url)
        try:
            async with make_sessionmaker(engine)() as session:
                return await archive_documents(session, PERIOD, seller_of(settings))
        finally:
            await engine.dispose()

    before = failed._value.get()
    assert asyncio.run(archive()) == 1
    assert api.get(f"/v1/invoices/{good}.pdf").content.startswith(b"%PDF")
    assert api.get(f"/v1/invoices/{broken}.pdf").status_code == 404  # no PDF yet
    assert failed._value.get() == before + 1
    assert any("could not be archived" in r.getMessage() for r in caplog.records)
    # Tried again by the next pass (and counted again), never given up silently.
    assert asyncio.run(archive()) == 0
    assert failed._value.get() == before + 2
