"""Issue 17 and the invoice side of issue 18, on real PostgreSQL: terminal equipment on the
invoices (a provided phone's provision once, a rented one's rent in advance prorated to the
day), a service-level credit deducted from the next invoices without making one negative (the
rest carried over), and the contract's charges (early termination fee, a refund, a device not
returned) on the final invoice, each once. Every amount is recomputed here from the rules as
the contract states them. The runs and the scheduler are given their days (an injected
clock), so this module has a database of its own."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from sqlalchemy import select

from centrex.billing import service
from centrex.billing.invoicing import run_month
from centrex.billing.models import (
    CatalogueItem,
    CreditUse,
    Invoice,
    ItemSubscription,
    Payment,
    ServiceCredit,
)
from centrex.billing.schemas import PlanIn, SubscriptionIn
from centrex.config import Settings
from centrex.contracts import equipment
from centrex.contracts import service as contracts
from centrex.contracts.models import ContractCharge
from centrex.contracts.scheduler import run_due
from centrex.contracts.schemas import ContractIn, EarlyTerminationIn, EquipmentIn, ReturnIn
from centrex.db.session import asyncpg_dsn, make_engine, make_sessionmaker
from centrex.sandbox.postgres import scratch_database

pytestmark = pytest.mark.integration

PARIS = ZoneInfo("Europe/Paris")
SETTINGS = Settings(_env_file=None)
PLAN = PlanIn(
    code="items", name="Items", effective_from=date(2026, 1, 1), prices_include_vat=False,
    line_fee=Decimal("30"), access_fee=Decimal("40"),
    tariff=[{"prefix": "33", "per_minute": "0.01"}],
)  # fmt: skip
LINE_FEE, ACCESS_FEE, PHONE, RENT, RENTED_VALUE = 3000, 4000, 15000, 500, 8000


def half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def vat20(ht: int) -> int:
    return half_up(Decimal(ht) * 20 / 100)


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=PARIS)


async def _dump(conn: asyncpg.Connection) -> str:
    """A checksum of what invoicing writes: a re-run must leave it as it is."""
    rows = []
    for query in (
        "SELECT id, number, ttc_cents FROM billing_invoices ORDER BY number",
        "SELECT id, invoice_id, amount_cents FROM billing_invoice_lines ORDER BY id",
        "SELECT id, invoice_line_id FROM contract_charges ORDER BY id",
        "SELECT id, invoice_line_id, amount_cents FROM billing_credit_uses ORDER BY id",
    ):
        rows.append([tuple(r) for r in await conn.fetch(query)])
    return hashlib.sha256(repr(rows).encode()).hexdigest()


async def test_equipment_credits_and_contract_charges_on_the_invoices(tmp_path):
    async with scratch_database(tmp_path, prefix="centrex_items") as db:
        conn = await asyncpg.connect(asyncpg_dsn(db.url))
        customer = uuid.uuid4()
        await conn.execute("INSERT INTO customers (id, name) VALUES ($1, 'Leaver')", customer)
        await conn.execute(
            "INSERT INTO lines (id, customer_id, label, sip_username, sip_ha1, sip_realm, "
            "sync_state, created_at) VALUES ($1, $2, 'desk', 'items1', $3, 'r', 'pending', $4)",
            uuid.uuid4(), customer, "0" * 32, datetime(2026, 1, 1, tzinfo=UTC),
        )  # fmt: skip
        engine = make_engine(db.url)
        sessions = make_sessionmaker(engine)

        async def invoices() -> list[Invoice]:
            async with sessions() as session:
                return list(await session.scalars(select(Invoice).order_by(Invoice.number)))

        try:
            async with sessions() as session:
                await service.create_plan_version(session, PLAN, today=date(2026, 1, 1))
                await service.subscribe(session, SubscriptionIn(
                    customer_id=customer, plan_code="items", starts_on=date(2026, 1, 1),
                ))  # fmt: skip
                contract = await contracts.create(session, ContractIn(
                    customer_id=customer, evidence="order 1", monthly_fee_cents=LINE_FEE,
                    accepted_at=midnight(date(2026, 1, 1)),
                ), now=midnight(date(2026, 1, 1)))  # fmt: skip
                phone = await equipment.add(session, EquipmentIn(
                    customer_id=customer, model="Yealink T54W", serial="P1",
                    mac="00:15:65:00:00:01", mode="provided", value_cents=PHONE,
                    provided_on=date(2026, 1, 1)))  # fmt: skip
                rented = await equipment.add(session, EquipmentIn(
                    customer_id=customer, model="Yealink W73P", serial="R1",
                    mac="00:15:65:00:00:02", mode="rented", value_cents=RENTED_VALUE,
                    monthly_fee_cents=RENT, provided_on=date(2026, 1, 16)))  # fmt: skip

            # January, issued 1 February: the access fee, January's and February's line fees,
            # the phone's provision once, the rent from 16 January (16/31 days) and February's.
            await run_month(sessions, date(2026, 1, 1), date(2026, 2, 1), SETTINGS)
            (jan,) = await invoices()
            by_kind = {}
            for line in jan.lines:
                by_kind.setdefault(line.kind, []).append(line.amount_cents)
            jan_rent = half_up(Decimal(RENT) * 16 / 31)
            assert by_kind["equipment_provision"] == [PHONE]
            assert by_kind["equipment_rent"] == [jan_rent, RENT]
            assert by_kind["line_fee"] == [LINE_FEE, LINE_FEE]
            ht = ACCESS_FEE + 2 * LINE_FEE + PHONE + jan_rent + RENT
            assert (jan.ht_cents, jan.ttc_cents) == (ht, ht + vat20(ht))
            assert {x.equipment_id for x in jan.lines if x.kind.startswith("equipment")} == {
                phone.id, rented.id}  # fmt: skip
            async with sessions() as session:
                session.add(Payment(invoice_id=jan.id, customer_id=customer, kind="payment",
                                    method="sepa", amount_cents=jan.ttc_cents,
                                    received_on=date(2026, 2, 11)))  # fmt: skip
                # A 50 € HT credit for an interruption (art. 18.1), more than February's due.
                session.add(ServiceCredit(customer_id=customer, amount_cents=5000,
                                          vat_rate=Decimal(20), granted_on=date(2026, 2, 10),
                                          reason="interruption of 9 February"))  # fmt: skip
                await session.commit()

            # February, issued 1 March: March's fee and rent (no provision again), the credit
            # takes all of it: the invoice is 0, not negative; 15 € carried over.
            await run_month(sessions, date(2026, 2, 1), date(2026, 3, 1), SETTINGS)
            feb = (await invoices())[1]
            assert sorted(x.kind for x in feb.lines) == [
                "equipment_rent", "line_fee", "service_credit"]  # fmt: skip
            (credit_line,) = [x for x in feb.lines if x.kind == "service_credit"]
            assert credit_line.amount_cents == -(LINE_FEE + RENT)
            assert (feb.ht_cents, feb.vat_cents, feb.ttc_cents) == (0, 0, 0)

            # Early termination asked on 10 March, effective 20 March: the fee is the monthly
            # fees of the contract months beginning on or after it, April 2026 to December 2028.
            async with sessions() as session:
                await contracts.terminate_early(session, contract.id, EarlyTerminationIn(
                    effective_on=date(2026, 3, 20), reason="moving"),
                    now=midnight(date(2026, 3, 10)))  # fmt: skip
            await run_due(sessions, SETTINGS, midnight(date(2026, 3, 20)))  # the termination
            async with sessions() as session:  # the phone back in good condition after 2 months
                back = ReturnIn(returned_on=date(2026, 3, 25), condition="good")
                await equipment.record_return(session, phone.id, back, today=date(2026, 3, 25))
            await run_due(sessions, SETTINGS, midnight(date(2026, 3, 30)))  # 10 days: not back

            before = await _dump(conn)
            await run_month(sessions, date(2026, 3, 1), date(2026, 4, 1), SETTINGS)
            final = (await invoices())[2]
            fee = (9 + 12 + 12) * LINE_FEE
            refund = half_up(Decimal(PHONE) * (60 - 2) / 60)
            charged = {x.kind: x.amount_cents for x in final.lines}
            assert charged == {"early_termination": fee, "equipment_refund": -refund,
                               "equipment_not_returned": RENTED_VALUE,
                               "service_credit": -1500}  # fmt: skip
            ht = fee - refund + RENTED_VALUE - 1500
            assert (final.ht_cents, final.ttc_cents) == (ht, ht + vat20(ht))
            async with sessions() as session:
                charges = list(await session.scalars(select(ContractCharge)))
                assert len(charges) == 3
                lines = {x.id: x for x in final.lines}
                for charge in charges:  # each points to the line that carried it
                    assert charge.invoice_id == final.id
                    assert lines[charge.invoice_line_id].amount_cents == charge.amount_cents
                uses = list(
                    await session.scalars(select(CreditUse).order_by(CreditUse.amount_cents))
                )
                assert [(u.invoice_id, u.amount_cents) for u in uses] == [
                    (final.id, 1500), (feb.id, LINE_FEE + RENT)]  # fmt: skip
            assert await _dump(conn) != before

            # A re-run of the month changes nothing.
            after = await _dump(conn)
            again = await run_month(sessions, date(2026, 3, 1), date(2026, 4, 1), SETTINGS)
            assert again.issued == [] and await _dump(conn) == after

            # A refund recorded after the final invoice: the next run carries it on an invoice
            # of its own, although the subscription has ended (negative: no surcharge, nothing
            # to collect); then nothing more.
            async with sessions() as session:
                session.add(ContractCharge(
                    customer_id=customer, contract_id=contract.id, kind="equipment_refund",
                    label="late refund", quantity=1, unit_cents=-1000, amount_cents=-1000,
                ))  # fmt: skip
                await session.commit()
            await run_month(sessions, date(2026, 4, 1), date(2026, 5, 1), SETTINGS)
            april = (await invoices())[3]
            assert [(x.kind, x.amount_cents) for x in april.lines] == [("equipment_refund", -1000)]
            assert april.ttc_cents == -1000 + vat20(-1000) == -1200
            last = await run_month(sessions, date(2026, 5, 1), date(2026, 6, 1), SETTINGS)
            assert last.issued == []
            # Credits and their uses are append-only.
            with pytest.raises(asyncpg.PostgresError):
                await conn.execute("UPDATE billing_credit_uses SET amount_cents = 1")
        finally:
            await conn.close()
            await engine.dispose()


async def test_catalogue_items_monthly_prorated_versioned_and_one_off_once(tmp_path):
    """Alias numbers (a monthly item, a new price from March), an optional service (a
    studio-recorded message, for half of February) and a one-off provision."""
    async with scratch_database(tmp_path, prefix="centrex_catalogue") as db:
        conn = await asyncpg.connect(asyncpg_dsn(db.url))
        customer = uuid.uuid4()
        await conn.execute("INSERT INTO customers (id, name) VALUES ($1, 'Options')", customer)
        engine = make_engine(db.url)
        sessions = make_sessionmaker(engine)
        try:
            async with sessions() as session:
                await service.create_plan_version(session, PLAN, today=date(2026, 1, 1))
                await service.subscribe(session, SubscriptionIn(
                    customer_id=customer, plan_code="items", starts_on=date(2026, 1, 1),
                ))  # fmt: skip
                for code, version, category, billing, since, fee in (
                    ("alias", 1, "alias_number", "monthly", date(2026, 1, 1), 200),
                    ("alias", 2, "alias_number", "monthly", date(2026, 3, 1), 300),
                    ("studio", 1, "option", "monthly", date(2026, 1, 1), 1250),
                    ("setup", 1, "provision", "one_off", date(2026, 1, 1), 5000),
                ):
                    session.add(CatalogueItem(
                        code=code, version=version, name=code.title(), category=category,
                        billing=billing, effective_from=since, entered_ttc=False, fee_cents=fee,
                        vat_rate=Decimal(20)))  # fmt: skip
                for code, quantity, starts, ends in (
                    ("alias", 2, date(2026, 1, 10), None),
                    ("studio", 1, date(2026, 2, 1), date(2026, 2, 14)),
                    ("setup", 1, date(2026, 1, 10), None),
                ):
                    session.add(ItemSubscription(customer_id=customer, item_code=code,
                                                 quantity=quantity, starts_on=starts,
                                                 ends_on=ends))  # fmt: skip
                await session.commit()

            async def items_of(number: int) -> list[tuple[str, int]]:
                rows = await conn.fetch(
                    "SELECT l.kind, l.amount_cents, l.service_month FROM billing_invoice_lines l"
                    " JOIN billing_invoices i ON i.id = l.invoice_id WHERE i.number = $1 AND "
                    "l.kind LIKE 'item%' ORDER BY l.amount_cents", number)  # fmt: skip
                return [(r[0], r[1]) for r in rows]

            await run_month(sessions, date(2026, 1, 1), date(2026, 2, 1), SETTINGS)
            # January from the 10th: 22/31 days of 2 x 2.00; February whole; the studio
            # message 14/28 days of 12.50; the provision once.
            assert await items_of(1) == sorted([
                ("item_fee", half_up(Decimal(400) * 22 / 31)), ("item_fee", 400),
                ("item_fee", half_up(Decimal(1250) * 14 / 28)), ("item_one_off", 5000),
            ], key=lambda x: x[1])  # fmt: skip
            async with sessions() as session:
                (jan,) = list(await session.scalars(select(Invoice)))
                session.add(Payment(invoice_id=jan.id, customer_id=customer, kind="payment",
                                    method="sepa", amount_cents=jan.ttc_cents,
                                    received_on=date(2026, 2, 5)))  # fmt: skip
                await session.commit()
            # February's invoice: March's alias fee at the new version; the message ended,
            # the provision is not billed again.
            await run_month(sessions, date(2026, 2, 1), date(2026, 3, 1), SETTINGS)
            assert await items_of(2) == [("item_fee", 600)]
            refs = await conn.fetchval("SELECT count(DISTINCT item_subscription_id) FROM "
                                       "billing_invoice_lines WHERE kind LIKE 'item%'")  # fmt: skip
            assert refs == 3
        finally:
            await conn.close()
            await engine.dispose()
