"""Re-rating after a tariff correction (explicit, audited): the calls of the months named are
rated again, from scratch and in start order, against the plan versions now in force for their
start. Rated calls are never edited: each call whose rating changes gets a ``ReratedCall``
(previous and new amounts), and the differences per customer, month and VAT rate an
``RerateAdjustment`` that the next invoice carries as a line, or, when the month was invoiced
and the difference is in the customer's favour, a credit note issued at once. Rating the same
months again with the same tariffs finds nothing changed and writes nothing."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date
from decimal import Decimal

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.audit.recorder import record
from centrex.billing.models import (
    Plan,
    RatedCall,
    RerateAdjustment,
    ReratedCall,
    Rerating,
    Subscription,
)
from centrex.billing.rating import KEPT_LEG, _lines_in_period, _tariff
from centrex.billing.rules.invoice import InvoiceLine
from centrex.billing.rules.money import euros
from centrex.billing.rules.rating import CallToRate, PeriodState, billing_day, rate_call
from centrex.billing.rules.tariff import in_force
from centrex.db.models import Cdr


async def _current(session: AsyncSession, rated: list[RatedCall]) -> dict[uuid.UUID, tuple]:
    """Each call's rating as it stands: its last re-rating, else the rated call."""
    out = {r.cdr_id: (r.amount_cents, r.vat_rate, r.prefix, r.bundle_s, r.charged_s) for r in rated}
    rows = await session.execute(
        select(ReratedCall.cdr_id, ReratedCall.amount_cents, ReratedCall.vat_rate,
               ReratedCall.prefix, ReratedCall.bundle_s, ReratedCall.charged_s)
        .where(ReratedCall.cdr_id.in_(list(out)))
        .order_by(ReratedCall.created_at)
    )  # fmt: skip
    for cdr_id, *rest in rows:
        out[cdr_id] = tuple(rest)
    return out


async def rerate_month(
    session: AsyncSession, rerating: Rerating, customer_id: uuid.UUID, period: date
) -> list[RerateAdjustment]:
    """Rate the customer's calls of ``period`` again (in the caller's transaction): the calls
    whose rating changed recorded, the differences as adjustments (not carried yet)."""
    # The rating pass's lock: no new call of this customer is rated meanwhile.
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                          {"k": f"billing-rating:{customer_id}"})  # fmt: skip
    rated = list(await session.scalars(
        select(RatedCall).where(RatedCall.customer_id == customer_id, RatedCall.period == period)
        .order_by(RatedCall.start_at, RatedCall.cdr_id)
    ))  # fmt: skip
    if not rated:
        return []
    current = await _current(session, rated)
    # Kept outside legs of transferred calls are rated as the rest of a connected leg (rating.py).
    kept = set(await session.scalars(
        select(Cdr.id).where(Cdr.id.in_([c.cdr_id for c in rated]), KEPT_LEG)))  # fmt: skip
    subs = list(await session.scalars(
        select(Subscription).where(Subscription.customer_id == customer_id)))  # fmt: skip
    plans = list(await session.scalars(
        select(Plan).where(Plan.code.in_({s.plan_code for s in subs}))))  # fmt: skip
    versions: dict[str, list[tuple[date, Plan]]] = defaultdict(list)
    for plan in plans:
        versions[plan.code].append((plan.effective_from, plan))
    indexes = {plan.id: _tariff(plan) for plan in plans}
    states: dict[uuid.UUID | None, PeriodState] = {}
    pool_lines: int | None = None
    rows: list[dict] = []
    deltas: dict[Decimal, list[int]] = defaultdict(lambda: [0, 0])  # rate -> [cents, calls]
    for call in rated:
        day = billing_day(call.start_at)
        sub = next((s for s in subs if s.starts_on <= day
                    and (s.ends_on is None or day <= s.ends_on)), None)  # fmt: skip
        plan = in_force(versions.get(sub.plan_code, []), day) if sub else None
        line = indexes[plan.id].find(call.callee) if plan else None
        if plan is None or line is None:
            continue  # no tariff now: its rating stands (the rating pass would not rate it)
        scope = None if plan.bundle_pooled else call.line_id
        if scope is None and pool_lines is None:
            pool_lines = await _lines_in_period(session, customer_id, period)
        state = states.setdefault(scope, PeriodState(bundle_total_s=0))
        state.bundle_total_s = plan.bundle_s * (pool_lines if scope is None else 1)
        new = rate_call(CallToRate(call.cdr_id, call.line_id, call.start_at, call.callee,
                                   call.billed_s, call.cdr_id in kept), line, state)  # fmt: skip
        was = current[call.cdr_id]
        if (new.amount_cents, new.vat_rate, new.prefix, new.bundle_s, new.charged_s) == was:
            continue
        rows.append({
            "id": uuid.uuid4(), "rerating_id": rerating.id, "rated_call_id": call.id,
            "cdr_id": call.cdr_id, "customer_id": customer_id, "period": period,
            "plan_id": plan.id, "prefix": new.prefix, "bundle_s": new.bundle_s,
            "charged_s": new.charged_s, "amount_cents": new.amount_cents,
            "vat_rate": new.vat_rate, "previous_cents": was[0], "previous_vat_rate": was[1],
        })  # fmt: skip
        deltas[new.vat_rate][0] += new.amount_cents
        deltas[new.vat_rate][1] += 1
        deltas[Decimal(was[1])][0] -= was[0]
        deltas[Decimal(was[1])][1] += 0 if Decimal(was[1]) == new.vat_rate else 1
    if not rows:
        return []
    await session.execute(
        insert(ReratedCall).execution_options(audited="one record per customer, below"), rows
    )
    await record(session, ReratedCall, customer_id, "rerated", after={
        "rerating_id": str(rerating.id), "period": period.isoformat(),
        "cdr_ids": [str(r["cdr_id"]) for r in rows]})  # fmt: skip
    adjustments = [
        RerateAdjustment(id=uuid.uuid4(), rerating_id=rerating.id, customer_id=customer_id,
                         period=period, vat_rate=rate, calls=calls, amount_cents=cents)
        for rate, (cents, calls) in sorted(deltas.items()) if cents != 0
    ]  # fmt: skip
    session.add_all(adjustments)
    return adjustments


def adjustment_line(adjustment: RerateAdjustment, reason: str) -> InvoiceLine:
    sign = "+" if adjustment.amount_cents > 0 else ""
    label = (f"Re-rating of {adjustment.period:%Y-%m} ({reason}): {adjustment.calls} calls, "
             f"{sign}{euros(adjustment.amount_cents)} EUR")  # fmt: skip
    return InvoiceLine("rerating", label[:300], Decimal(adjustment.calls), 0,
                       adjustment.amount_cents, adjustment.vat_rate, adjustment.period,
                       source=str(adjustment.id))  # fmt: skip


def customers_with_adjustments():
    """Customers with a difference no invoice carried yet: invoiced by the next run even
    once their subscription has ended."""
    return select(RerateAdjustment.customer_id).where(RerateAdjustment.invoice_line_id.is_(None))


async def adjustments_due(session: AsyncSession, customer_id: uuid.UUID) -> list[InvoiceLine]:
    """The customer's re-rating differences no invoice or credit note carried yet, locked
    until the invoice commits."""
    rows = (await session.execute(
        select(RerateAdjustment, Rerating.reason)
        .join(Rerating, Rerating.id == RerateAdjustment.rerating_id)
        .where(RerateAdjustment.customer_id == customer_id,
               RerateAdjustment.invoice_line_id.is_(None))
        .order_by(RerateAdjustment.created_at, RerateAdjustment.period, RerateAdjustment.id)
        .with_for_update(of=RerateAdjustment)
    )).all()  # fmt: skip
    return [adjustment_line(a, reason) for a, reason in rows]


def credit_note_lines(adjustments: list[RerateAdjustment], reason: str) -> list[InvoiceLine]:
    """A credit note's lines (positive amounts) for differences in the customer's favour."""
    return [
        InvoiceLine("rerating", adjustment_line(a, reason).label, Decimal(a.calls), 0,
                    -a.amount_cents, a.vat_rate, a.period, source=str(a.id))
        for a in adjustments
    ]  # fmt: skip


def credit_note_due(adjustments: list[RerateAdjustment], invoiced: bool) -> bool:
    """A month already invoiced whose re-rating is, in total, in the customer's favour is
    refunded by a credit note; otherwise the difference waits for the next invoice."""
    return invoiced and sum(a.amount_cents for a in adjustments) < 0
