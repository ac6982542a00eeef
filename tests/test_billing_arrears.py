"""Issue 17 (billing), late payment on real PostgreSQL: an invoice left unpaid across the
30 June / 1 July boundary; the next invoices charge the interest (each half-year at its own
dated reference rates, recomputed here) and the 40 € indemnity once; a missing reference rate
holds the invoice back. The run is given its issue dates (an injected clock), so this module
has a database of its own: its invoices are dated in 2026 whatever the others issued."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal

import asyncpg
import pytest
from sqlalchemy import select

from centrex.billing import service
from centrex.billing.invoicing import run_interim, run_month
from centrex.billing.models import Invoice, Payment, ReferenceRate
from centrex.billing.schemas import PlanIn, SubscriptionIn
from centrex.config import Settings
from centrex.db.session import asyncpg_dsn, make_engine, make_sessionmaker
from centrex.sandbox.postgres import scratch_database

pytestmark = pytest.mark.integration

H1, H2 = (Decimal("2.15"), Decimal("6.67")), (Decimal("1.90"), Decimal("3.16"))  # MRO, legal
PLAN = PlanIn(
    code="late", name="Late", effective_from=date(2026, 1, 1), prices_include_vat=False,
    line_fee=Decimal("50"), tariff=[{"prefix": "33", "per_minute": "0.01"}],
)  # fmt: skip


def half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


async def test_interest_across_the_half_year_and_the_indemnity_once(tmp_path):
    settings = Settings(_env_file=None)
    async with scratch_database(tmp_path, prefix="centrex_arrears") as db:
        conn = await asyncpg.connect(asyncpg_dsn(db.url))
        customer = uuid.uuid4()
        await conn.execute("INSERT INTO customers (id, name) VALUES ($1, 'Late payer')", customer)
        await conn.execute(
            "INSERT INTO lines (id, customer_id, label, sip_username, sip_ha1, sip_realm, "
            "sync_state, created_at) VALUES ($1, $2, 'desk', 'late1', $3, 'r', 'pending', $4)",
            uuid.uuid4(), customer, "0" * 32, datetime(2026, 1, 1, tzinfo=UTC),
        )  # fmt: skip
        await conn.close()
        engine = make_engine(db.url)
        sessions = make_sessionmaker(engine)
        try:
            async with sessions() as session:
                await service.create_plan_version(session, PLAN, today=date(2026, 1, 1))
                sub = SubscriptionIn(customer_id=customer, plan_code="late",
                                     starts_on=date(2026, 1, 1))  # fmt: skip
                await service.subscribe(session, sub)
                session.add_all([
                    ReferenceRate(kind="ecb_mro", effective_from=date(2025, 6, 11), rate=H1[0]),
                    ReferenceRate(kind="ecb_mro", effective_from=date(2026, 6, 10), rate=H2[0]),
                    ReferenceRate(kind="legal_professional", effective_from=date(2026, 1, 1),
                                  rate=H1[1]),
                ])  # fmt: skip
                await session.commit()

            async def invoices() -> list[Invoice]:
                async with sessions() as session:
                    return list(await session.scalars(select(Invoice).order_by(Invoice.number)))

            first = await run_month(sessions, date(2026, 5, 1), date(2026, 6, 1), settings)
            (may,) = await invoices()
            assert first.issued == [may.reference] and may.due_on == date(2026, 6, 11)
            assert not [x for x in may.lines if x.kind in ("late_interest", "indemnity")]

            # Unpaid on 20 July; the legal rate of the second half-year is not known yet:
            # the invoice is held back rather than charged at a guessed rate.
            held = await run_month(sessions, date(2026, 6, 1), date(2026, 7, 20), settings)
            assert (held.issued, held.unpriced) == ([], [customer])
            assert len(await invoices()) == 1
            async with sessions() as session:
                session.add(ReferenceRate(kind="legal_professional",
                                          effective_from=date(2026, 7, 1), rate=H2[1]))  # fmt: skip
                await session.commit()
            second = await run_month(sessions, date(2026, 6, 1), date(2026, 7, 20), settings)
            june = (await invoices())[1]
            assert second.issued == [june.reference] and june.number == may.number + 1
            # 12-30 June: 19 days at max(2.15 + 10, 3 x 6.67); 1-19 July: 19 days at
            # max(1.90 + 10, 3 x 3.16), on May's TTC.
            rate1 = max(H1[0] + 10, 3 * H1[1])
            rate2 = max(H2[0] + 10, 3 * H2[1])
            expected = half_up(Decimal(may.ttc_cents) * (rate1 * 19 + rate2 * 19) / 100 / 365)
            charges = {x.kind: x for x in june.lines if x.refers_to_invoice_id == may.id}
            assert charges["late_interest"].amount_cents == expected > 0
            assert charges["late_interest"].interest_until == date(2026, 7, 19)
            assert charges["indemnity"].amount_cents == 4000
            assert {charges["late_interest"].vat_rate, charges["indemnity"].vat_rate} == {0}

            # June's invoice is paid; May's still is not: interest runs on, no second indemnity.
            async with sessions() as session:
                session.add(Payment(invoice_id=june.id, customer_id=customer, kind="payment",
                                    method="transfer", amount_cents=june.ttc_cents,
                                    received_on=date(2026, 7, 25)))  # fmt: skip
                await session.commit()
            await run_month(sessions, date(2026, 7, 1), date(2026, 8, 5), settings)
            july = (await invoices())[2]
            charges = {x.kind: x for x in july.lines if x.refers_to_invoice_id}
            assert set(charges) == {"late_interest"}
            assert charges["late_interest"].refers_to_invoice_id == may.id
            # 20 July - 4 August: 16 days at the second half-year's rate.
            assert charges["late_interest"].amount_cents == half_up(
                Decimal(may.ttc_cents) * rate2 * 16 / 100 / 365
            )
        finally:
            await engine.dispose()


async def test_an_interim_invoice_past_the_threshold_and_the_month_end_rest(tmp_path):
    """Art. 11.2: usage past the plan's threshold is invoiced early; the monthly invoice then
    carries only what the interim did not (CDR rows written as the shipper writes them)."""
    settings = Settings(_env_file=None)
    plan = PLAN.model_copy(update={"code": "interim", "interim_threshold": Decimal("1.00")})
    async with scratch_database(tmp_path, prefix="centrex_interim") as db:
        conn = await asyncpg.connect(asyncpg_dsn(db.url))
        customer, line = uuid.uuid4(), uuid.uuid4()
        await conn.execute("INSERT INTO customers (id, name) VALUES ($1, 'Big talker')", customer)
        await conn.execute(
            "INSERT INTO lines (id, customer_id, label, sip_username, sip_ha1, sip_realm, "
            "sync_state, created_at) VALUES ($1, $2, 'desk', 'talk1', $3, 'r', 'pending', $4)",
            line, customer, "0" * 32, datetime(2026, 1, 1, tzinfo=UTC),
        )  # fmt: skip

        async def calls(day: int, minutes: list[int]) -> None:
            for n, length in enumerate(minutes):
                at = datetime(2026, 3, day, 9, n, tzinfo=UTC)
                await conn.execute(
                    "INSERT INTO cdrs (id, node, linkedid, customer_id, caller_line_id, "
                    "direction, caller, callee, destination, start_at, answer_at, end_at, "
                    "duration_ms, billed_s, disposition, sip_code) VALUES ($1, 'n', $2, $3, $4,"
                    " 'outbound', '+33100000000', '+33145678901', '33', $5, $5, $5, $6, $7, "
                    "'answered', 200)",
                    uuid.uuid4(), f"{day}-{n}", customer, line, at, length * 60_000, length * 60,
                )  # fmt: skip

        engine = make_engine(db.url)
        sessions = make_sessionmaker(engine)
        try:
            async with sessions() as session:
                await service.create_plan_version(session, plan, today=date(2026, 1, 1))
                sub = SubscriptionIn(customer_id=customer, plan_code="interim",
                                     starts_on=date(2026, 1, 1))  # fmt: skip
                await service.subscribe(session, sub)
                await session.commit()
            await calls(2, [30, 30])  # 60 min at 0.01 €: 0.60 €, under the 1.00 € threshold
            assert await run_interim(sessions, date(2026, 3, 3), settings) == []
            await calls(4, [50])  # 110 min: 1.10 €, past it
            (reference,) = await run_interim(sessions, date(2026, 3, 5), settings)
            assert await run_interim(sessions, date(2026, 3, 6), settings) == []  # nothing new
            await calls(20, [25])  # 0.25 € after the interim
            async with sessions() as session:  # the interim is paid on time (else: interest)
                interim = await session.scalar(select(Invoice).where(Invoice.kind == "interim"))
                session.add(Payment(invoice_id=interim.id, customer_id=customer, kind="payment",
                                    method="sepa", amount_cents=interim.ttc_cents,
                                    received_on=date(2026, 3, 10)))  # fmt: skip
                await session.commit()
            await run_month(sessions, date(2026, 3, 1), date(2026, 4, 1), settings)
            async with sessions() as session:
                interim, march = list(await session.scalars(
                    select(Invoice).where(Invoice.customer_id == customer)
                    .order_by(Invoice.number)))  # fmt: skip
            assert (interim.reference, interim.kind, interim.ht_cents) == (
                reference,
                "interim",
                110,
            )
            assert interim.due_on == date(2026, 3, 15)
            usage = [x.amount_cents for x in march.lines if x.kind == "usage"]
            assert usage == [25]  # 135 cents of March, less the 110 of the interim
            assert march.number == interim.number + 1
        finally:
            await conn.close()
            await engine.dispose()
