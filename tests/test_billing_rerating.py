"""Issue 17, re-rating after a tariff correction, on real PostgreSQL: March is invoiced, then a
correction of the tariff from 15 March is entered (past-dated, with its reason) and the month
re-rated: the calls from 15 March differ, the difference goes on the next invoice as a line
traceable to the re-rating and its CDRs; a second correction lowers the price, and the
re-rating of the invoiced month issues a credit note. A re-rating repeated changes nothing;
the rated calls and the invoices are never edited. Every amount recomputed here. Runs given
their days (an injected clock): a database of its own."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal

import asyncpg
import pytest
from sqlalchemy import select

from centrex.billing import service
from centrex.billing.invoicing import run_month
from centrex.billing.models import (
    Invoice,
    InvoiceDocument,
    Payment,
    RerateAdjustment,
    Rerating,
)
from centrex.billing.rerating_routes import run_rerating
from centrex.billing.schemas import PlanIn, SubscriptionIn
from centrex.config import Settings
from centrex.db.session import asyncpg_dsn, make_engine, make_sessionmaker
from centrex.sandbox.postgres import scratch_database
from centrex.services.errors import ServiceError

pytestmark = pytest.mark.integration

SETTINGS = Settings(_env_file=None)
TARIFF = {"prefix": "33", "first_increment_s": 60, "increment_s": 60}
PLAN = PlanIn(
    code="rr", name="Rerated", effective_from=date(2026, 1, 1), prices_include_vat=False,
    line_fee=Decimal("10"), tariff=[{**TARIFF, "per_minute": "0.10"}],
)  # fmt: skip
# (day of March, minutes): the last two after the 15th, when the corrections apply.
CALLS = [(2, 2), (20, 3), (25, 1)]


def version(**changes) -> PlanIn:
    return PlanIn(**{**PLAN.model_dump(), **changes})


def cents(minutes: int, per_minute: str) -> int:
    value = Decimal(per_minute) * 100 * minutes
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


async def _dump(conn: asyncpg.Connection) -> str:
    rows = []
    for query in (
        "SELECT id, ttc_cents FROM billing_invoices ORDER BY number",
        "SELECT id, amount_cents FROM billing_rated_calls ORDER BY id",
        "SELECT id, amount_cents FROM billing_rerated_calls ORDER BY id",
        "SELECT id, amount_cents, invoice_line_id FROM billing_rerating_adjustments ORDER BY id",
    ):
        rows.append([tuple(r) for r in await conn.fetch(query)])
    return hashlib.sha256(repr(rows).encode()).hexdigest()


async def test_a_correction_rerated_onto_the_next_invoice_then_a_credit_note(tmp_path):
    async with scratch_database(tmp_path, prefix="centrex_rerating") as db:
        conn = await asyncpg.connect(asyncpg_dsn(db.url))
        customer, line = uuid.uuid4(), uuid.uuid4()
        await conn.execute("INSERT INTO customers (id, name) VALUES ($1, 'Rerated')", customer)
        await conn.execute(
            "INSERT INTO lines (id, customer_id, label, sip_username, sip_ha1, sip_realm, "
            "sync_state, created_at) VALUES ($1, $2, 'desk', 'rr1', $3, 'r', 'pending', $4)",
            line, customer, "0" * 32, datetime(2026, 1, 1, tzinfo=UTC),
        )  # fmt: skip
        cdr_ids = {}
        for day, minutes in CALLS:
            cdr_ids[day] = uuid.uuid4()
            at = datetime(2026, 3, day, 9, tzinfo=UTC)
            await conn.execute(
                "INSERT INTO cdrs (id, node, linkedid, customer_id, caller_line_id, "
                "direction, caller, callee, destination, start_at, answer_at, end_at, "
                "duration_ms, billed_s, disposition, sip_code) VALUES ($1, 'n', $2, $3, $4,"
                " 'outbound', '+33100000000', '+33145678901', '33', $5, $5, $5, $6, $7, "
                "'answered', 200)",
                cdr_ids[day], f"rr-{day}", customer, line, at, minutes * 60_000, minutes * 60,
            )  # fmt: skip
        engine = make_engine(db.url)
        sessions = make_sessionmaker(engine)

        async def invoices() -> list[Invoice]:
            async with sessions() as session:
                return list(await session.scalars(select(Invoice).order_by(Invoice.number)))

        async def rerate(today: date, reason: str) -> tuple[Rerating, list[str]]:
            async with sessions() as session:
                rerating = Rerating(id=uuid.uuid4(), from_period=date(2026, 3, 1),
                                    to_period=date(2026, 3, 1), customer_id=None, reason=reason,
                                    requested_on=today)  # fmt: skip
                session.add(rerating)
                await session.commit()
            return rerating, await run_rerating(sessions, rerating, SETTINGS, today)

        async def adjustments(rerating: Rerating) -> list[RerateAdjustment]:
            async with sessions() as session:
                return list(await session.scalars(select(RerateAdjustment).where(
                    RerateAdjustment.rerating_id == rerating.id)))  # fmt: skip

        try:
            async with sessions() as session:
                await service.create_plan_version(session, PLAN, today=date(2026, 1, 1))
                await service.subscribe(session, SubscriptionIn(
                    customer_id=customer, plan_code="rr", starts_on=date(2026, 1, 1)))  # fmt: skip
                await session.commit()
            await run_month(sessions, date(2026, 3, 1), date(2026, 4, 1), SETTINGS)
            (march,) = await invoices()
            usage = sum(x.amount_cents for x in march.lines if x.kind == "usage")
            assert usage == sum(cents(m, "0.10") for _, m in CALLS)

            # A past-dated version is refused unless it is a correction with its reason.
            fix = version(effective_from=date(2026, 3, 15),
                          tariff=[{**TARIFF, "per_minute": "0.15"}])  # fmt: skip
            async with sessions() as session:
                with pytest.raises(ServiceError):
                    await service.create_plan_version(session, fix, today=date(2026, 4, 5))
            async with sessions() as session:
                fix = version(**{**fix.model_dump(), "correction_reason": "typo: 0.15 from 15/3"})
                await service.create_plan_version(session, fix, today=date(2026, 4, 5))
                await session.commit()

            before = await _dump(conn)
            first, notes = await rerate(date(2026, 4, 5), "typo in the 15 March tariff")
            assert notes == []  # more to pay: no credit note
            (adjustment,) = await adjustments(first)
            delta = sum(cents(m, "0.15") - cents(m, "0.10") for d, m in CALLS if d >= 15)
            assert (adjustment.amount_cents, adjustment.calls) == (delta, 2) and delta > 0
            rerated = await conn.fetch(
                "SELECT cdr_id, previous_cents, amount_cents FROM billing_rerated_calls "
                "WHERE rerating_id = $1 ORDER BY amount_cents", first.id)  # fmt: skip
            assert [tuple(r) for r in rerated] == [
                (cdr_ids[25], cents(1, "0.10"), cents(1, "0.15")),
                (cdr_ids[20], cents(3, "0.10"), cents(3, "0.15")),
            ]
            # The rated calls and March's invoice as they were.
            rated = await conn.fetch("SELECT amount_cents FROM billing_rated_calls ORDER BY 1")
            assert sorted(r[0] for r in rated) == sorted(cents(m, "0.10") for _, m in CALLS)
            assert (await invoices())[0].ttc_cents == march.ttc_cents
            assert await _dump(conn) != before

            # The same re-rating again: nothing changed, nothing written.
            after = await _dump(conn)
            again, notes = await rerate(date(2026, 4, 5), "once more")
            assert notes == [] and await adjustments(again) == []
            assert await _dump(conn) == after

            async with sessions() as session:  # paid on time (else: late interest)
                session.add(Payment(invoice_id=march.id, customer_id=customer, kind="payment",
                                    method="sepa", amount_cents=march.ttc_cents,
                                    received_on=date(2026, 4, 10)))  # fmt: skip
                await session.commit()
            # April's invoice carries the difference, once, pointing to the adjustment.
            await run_month(sessions, date(2026, 4, 1), date(2026, 5, 1), SETTINGS)
            april = (await invoices())[1]
            (line_row,) = [x for x in april.lines if x.kind == "rerating"]
            assert line_row.amount_cents == delta
            (adjustment,) = await adjustments(first)
            assert (adjustment.invoice_id, adjustment.invoice_line_id) == (april.id, line_row.id)
            fees = sum(x.amount_cents for x in april.lines if x.kind == "line_fee")
            assert april.ht_cents == fees + delta

            # A second correction lowers the price from 20 March: March is invoiced, the
            # difference is refunded by a credit note of March's invoice, issued at once.
            async with sessions() as session:
                low = version(effective_from=date(2026, 3, 20), correction_reason="promotion",
                              tariff=[{**TARIFF, "per_minute": "0.05"}])  # fmt: skip
                await service.create_plan_version(session, low, today=date(2026, 5, 3))
                await session.commit()
            second, (reference,) = await rerate(date(2026, 5, 3), "promotion from 20 March")
            back = sum(cents(m, "0.15") - cents(m, "0.05") for d, m in CALLS if d >= 20)
            note = (await invoices())[2]
            assert (note.reference, note.kind, note.credits_invoice_id) == (
                reference, "credit_note", march.id)  # fmt: skip
            assert (note.ht_cents, note.ttc_cents) == (back, back + back * 20 // 100)
            (adjustment,) = await adjustments(second)
            assert adjustment.amount_cents == -back and adjustment.invoice_id == note.id
            async with sessions() as session:
                assert await session.get(InvoiceDocument, note.id) is not None
            after = await _dump(conn)
            _, notes = await rerate(date(2026, 5, 3), "once more")
            assert notes == [] and await _dump(conn) == after
        finally:
            await conn.close()
            await engine.dispose()
