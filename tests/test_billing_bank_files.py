"""Issue 17 (billing), the bank's return files: a real pain.008 collection run of three
invoices, then the bank's answers made by a bank simulator (tests/bank_sim.py, a separate
process writing the real ISO 20022 formats, checked here against the official XSDs): a
pain.002 rejecting one debit, a camt.054 settling the two others, a later camt.054 returning
one of them. Imported through POST /v1/billing/bank-files: payments and rejects booked, the
rejected and returned invoices unpaid again for the non-payment steps; hostile or wrong files
refused with a 4xx naming the problem, changing nothing; a re-import changes nothing."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from helpers import sql
from lxml import etree
from test_billing_invoices import in_process

from centrex.billing.bankfile import SCHEMAS
from centrex.billing.models import Invoice
from centrex.billing.sepa import collect
from centrex.contracts.nonpayment import unpaid_cents

pytestmark = pytest.mark.integration

SIM = Path(__file__).resolve().parent / "bank_sim.py"
CREDITOR = {"billing_creditor_id": "FR12ZZZ123456",
            "billing_creditor_iban": "FR7630006000011234567890189",
            "billing_creditor_bic": "AGRIFRPP"}  # fmt: skip
DEBTOR_IBAN, DEBTOR_BIC = "DE89370400440532013000", "COBADEFFXXX"
PLAN = {"code": "bank", "name": "Bank files", "effective_from": "2026-01-01",
        "prices_include_vat": False, "line_fee": "10.00",
        "tariff": [{"prefix": "33", "per_minute": "0.01"}]}  # fmt: skip
TABLES = ("billing_bank_files", "billing_bank_entries", "billing_payments")


def bank(kind: str, pain008: str, *args: str) -> bytes:
    """The simulator's answer to our file; checked against the official XSD of its kind."""
    out = subprocess.run([sys.executable, str(SIM), kind, *args], input=pain008.encode(),
                         capture_output=True, check=True, timeout=60).stdout  # fmt: skip
    name = "pain.002.001.11" if kind == "pain002" else "camt.054.001.08"
    etree.XMLSchema(etree.parse(str(SCHEMAS / f"{name}.xsd"))).assertValid(etree.fromstring(out))
    return out


def counts(database_url: str) -> tuple[int, ...]:
    return tuple(sql(database_url, f"SELECT count(*) FROM {t}")[0][0] for t in TABLES)


def post(api: httpx.Client, data: bytes) -> httpx.Response:
    return api.post("/v1/billing/bank-files", content=data,
                    headers={"Content-Type": "application/xml"})  # fmt: skip


@pytest.fixture(scope="module")
def collected(api: httpx.Client, database_url: str, settings) -> dict:
    """Three customers on SEPA with a mandate each, invoiced for last month and collected in
    one pain.008 file."""
    assert api.post("/v1/billing/plans", json=PLAN).status_code == 201
    this_month = date.today().replace(day=1)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    ids = []
    for n in range(3):
        customer = api.post("/v1/customers", json={"name": f"Debtor {n}"}).json()
        assert api.post("/v1/lines", json={"customer_id": customer["id"], "label": "desk"})
        body = {"customer_id": customer["id"], "plan_code": "bank",
                "starts_on": last_month.isoformat()}  # fmt: skip
        assert api.post("/v1/billing/subscriptions", json=body).status_code == 201
        mandate = {"customer_id": customer["id"], "reference": f"RUM-BANK-{n}",
                   "debtor_name": f"Debtor {n}", "iban": DEBTOR_IBAN, "bic": DEBTOR_BIC,
                   "signed_on": "2026-01-15"}  # fmt: skip
        assert api.post("/v1/billing/mandates", json=mandate).status_code == 201
        ids.append(customer["id"])
    run = api.post("/v1/billing/invoice-runs", json={"month": f"{last_month:%Y-%m}"})
    assert run.status_code == 200, run.text
    invoices = [api.get("/v1/invoices", params={"customer_id": c}).json()[0] for c in ids]
    configured = settings.model_copy(update=CREDITOR)
    collection = in_process(database_url, lambda s: collect(s, date.today(), configured))
    return {"invoices": invoices, "xml": collection.xml}


def unpaid(database_url: str, invoice: dict) -> int:
    async def work(session):
        return await unpaid_cents(session, await session.get(Invoice, invoice["id"]))

    return in_process(database_url, work)


def test_rejects_settlements_and_returns_are_booked_once(api, collected, database_url):
    rejected, settled, returned = collected["invoices"]
    r, s, t = (i["reference"] for i in collected["invoices"])
    ttc = {i["reference"]: i["ttc_cents"] for i in collected["invoices"]}
    pain002 = bank("pain002", collected["xml"], "--reject", f"{r}=AM04")
    imported = post(api, pain002)
    assert imported.status_code == 201, imported.text
    (entry,) = imported.json()["entries"]
    assert (entry["outcome"], entry["end_to_end_id"], entry["reason"]) == ("rejected", r, "AM04")
    assert entry["mandate_reference"] == "RUM-BANK-0" and entry["amount_cents"] == ttc[r]
    assert entry["payment_id"] is None  # no money had been booked: nothing to undo
    assert unpaid(database_url, rejected) == ttc[r]

    before = counts(database_url)
    again = post(api, pain002)  # the same file again: refused, nothing changed
    assert again.status_code == 409 and "was imported on" in again.text, again.text
    assert counts(database_url) == before

    booked_on = date.today() + timedelta(days=2)
    settles = bank("camt054", collected["xml"], "--settle", s, "--settle", t,
                   "--on", booked_on.isoformat())  # fmt: skip
    imported = post(api, settles)
    assert imported.status_code == 201, imported.text
    assert {(e["end_to_end_id"], e["outcome"]) for e in imported.json()["entries"]} == {
        (s, "settled"), (t, "settled")}  # fmt: skip
    payments = sql(database_url, "SELECT i.reference, p.kind, p.amount_cents, p.received_on, "
                   "p.method FROM billing_payments p JOIN billing_invoices i ON i.id = "
                   "p.invoice_id WHERE i.reference = ANY($1::text[])", [r, s, t])  # fmt: skip
    assert sorted(tuple(p) for p in payments) == sorted(
        [(s, "payment", ttc[s], booked_on, "sepa"), (t, "payment", ttc[t], booked_on, "sepa")]
    )
    assert unpaid(database_url, settled) == unpaid(database_url, returned) == 0
    balance = api.get(f"/v1/customers/{settled['customer_id']}/balance").json()
    assert balance["balance_cents"] == 0

    # The debtor of the third asks its bank for a refund (MD06) after settlement: unpaid again.
    refund = bank("camt054", collected["xml"], "--return", f"{t}=MD06")
    imported = post(api, refund)
    assert imported.status_code == 201, imported.text
    (entry,) = imported.json()["entries"]
    assert (entry["outcome"], entry["reason"]) == ("returned", "MD06")
    assert unpaid(database_url, returned) == ttc[t]
    assert api.get(f"/v1/customers/{returned['customer_id']}/balance").json()[
        "balance_cents"] == ttc[t]  # fmt: skip
    # Each file, each entry and each payment it made is in the audit trail, as the API's.
    audited = sql(database_url, "SELECT a.object_type, count(*) FROM audit_log a WHERE "
                  "a.operation = 'POST /v1/billing/bank-files' GROUP BY a.object_type")  # fmt: skip
    assert dict(audited) == {"billing_bank_file": 3, "billing_bank_entry": 4,
                             "billing_payment": 3}  # fmt: skip


def test_hostile_and_wrong_files_are_refused_changing_nothing(api, collected, database_url):
    """After the test above (its bookings are the state some refusals are about)."""
    r, s, t = (i["reference"] for i in collected["invoices"])
    xml = collected["xml"]
    laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
              b"<Document>&lol2;</Document>")  # fmt: skip
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.11">&x;</Document>'
    )
    good = bank("pain002", xml, "--reject", f"{s}=AM04")
    cases = [
        (laughs, 400, "DOCTYPE"),
        (xxe, 400, "DOCTYPE"),
        (b"", 400, "empty"),
        (b"<Document", 400, "not well-formed"),
        (good.replace(b"pain.002.001.11", b"pain.002.001.03"), 400, "namespace"),
        (xml.encode(), 400, "namespace"),  # our own pain.008 sent back
        (good.replace(b"<TxSts>", b"<Bogus/><TxSts>"), 400, "XSD"),
        (bank("pain002", xml, "--reject", "FA999999=AM04"), 422, "end-to-end id"),
        (bank("pain002", xml, "--reject", f"{s}=AM04", "--amount", f"{s}=0.01"), 400,
         "amount 0.01 EUR"),
        (good.replace(b"RUM-BANK-1", b"RUM-OTHER"), 422, "mandate 'RUM-OTHER'"),
        # What the first test booked: r rejected, s settled, t settled then returned.
        (bank("camt054", xml, "--settle", r), 409, "the debit was rejected"),
        (bank("camt054", xml, "--settle", s), 409, "already settled"),
        (good, 409, "the debit was settled"),
        (bank("camt054", xml, "--return", f"{t}=MD06"), 409, "already returned"),
        (bank("camt054", xml, "--return", f"{r}=MD06"), 409, "never settled"),
    ]  # fmt: skip
    before = counts(database_url)
    for data, status, words in cases:
        refused = post(api, data)
        assert refused.status_code == status, (words, refused.text)
        assert words in refused.text and refused.json()["detail"][0]["loc"][-1] == "file"
        assert counts(database_url) == before, words
    # A file one of whose entries is wrong is refused whole: the good one (a return of s, which
    # was settled) is not booked either.
    mixed = bank("camt054", xml, "--return", f"{s}=MD06", "--return", "FA999999=MD06")
    assert post(api, mixed).status_code == 422
    assert counts(database_url) == before
    # Over the API's body limit: 413 before it is read.
    assert post(api, b"<x>" + b" " * (2 * 1024 * 1024) + b"</x>").status_code == 413
    assert counts(database_url) == before
