"""Rating the CDRs: each answered leg someone pays, once, against the tariff in force when it
started. One customer at a time, under a transaction-scoped advisory lock on that customer, so
two rating passes never share a bundle; the unique ``cdr_id`` is the last guard.

Who pays which leg (docs/billing.md, "Rating"): an outbound call, and a forward's outbound leg
(centrex/features/cdr_legs.py), are their caller line's; a transferred part is its
``paid_by_line_id``'s (docs/transfers.md), for its outside leg: the callee when the part goes
out, else the outside transferee kept (the part's caller), rated as the rest of that leg."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy import and_, case, func, insert, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.audit.recorder import record
from centrex.billing.models import Plan, RatedCall, Subscription
from centrex.billing.rules.rating import (
    BILLING_ZONE,
    CallToRate,
    PeriodState,
    billing_day,
    billing_month,
    is_emergency,
    rate_call,
)
from centrex.billing.rules.tariff import PrefixIndex, TariffLine, in_force
from centrex.db.models import Cdr, Line

log = logging.getLogger(__name__)

RATED_DISPOSITIONS = ("answered", "cut")


@dataclass
class RatingResult:
    rated: int = 0
    unpriced: list[uuid.UUID] = field(default_factory=list)
    unpriced_periods: set[date] = field(default_factory=set)


#: The line that pays a leg: a transferred part's payer, else the caller's line.
PAYER = func.coalesce(Cdr.paid_by_line_id, Cdr.caller_line_id)
#: A transferred part that is not itself outbound but keeps a paid outside leg (an outside
#: transferee called out by the payer): that leg's number is the part's caller.
KEPT_LEG = and_(Cdr.paid_by_line_id.is_not(None), Cdr.direction != "outbound")
NUMBER = case((KEPT_LEG, Cdr.caller), else_=Cdr.callee)


def _pending(customer_id: uuid.UUID | None = None, line_ids: list[uuid.UUID] | None = None):
    """Answered legs to the public network that a line pays, not emergency, not rated yet;
    the customer is the paying line's (``line_ids``: its lines)."""
    query = (
        select(Cdr)
        .join(Line, Line.id == PAYER)
        .where(
            Cdr.disposition.in_(RATED_DISPOSITIONS),
            or_(Cdr.paid_by_line_id.is_not(None),
                and_(Cdr.direction == "outbound", Cdr.caller_line_id.is_not(None))),
            or_(Cdr.destination.is_(None), Cdr.destination != "emergency"),
            ~select(RatedCall.id).where(RatedCall.cdr_id == Cdr.id).exists(),
        )
    )  # fmt: skip
    if customer_id is not None:
        # Each arm on an index (the customer's calls; the parts its lines pay, a partial index):
        # a condition on the joined line alone would read every CDR for every customer.
        query = query.where(Line.customer_id == customer_id, or_(
            and_(Cdr.customer_id == customer_id, Cdr.paid_by_line_id.is_(None)),
            Cdr.paid_by_line_id.in_(line_ids or []),
        ))  # fmt: skip
    return query


def _tariff(plan: Plan) -> PrefixIndex:
    return PrefixIndex(
        TariffLine(
            prefix=r.prefix, per_minute=r.per_minute, connection_fee=r.connection_fee,
            min_s=r.min_s, first_increment_s=r.first_increment_s, increment_s=r.increment_s,
            in_bundle=r.in_bundle, vat_rate=r.vat_rate,
        )
        for r in plan.tariff_lines
    )  # fmt: skip


def _month_bounds(period: date) -> tuple[datetime, datetime]:
    nxt = (period.replace(day=28) + timedelta(days=4)).replace(day=1)
    return (datetime.combine(period, time(), BILLING_ZONE),
            datetime.combine(nxt, time(), BILLING_ZONE))  # fmt: skip


async def _period_state(
    session: AsyncSession, customer_id: uuid.UUID, period: date, scope: uuid.UUID | None
) -> PeriodState:
    """What the period used before this pass: bundle seconds of the scope (a line, or None for
    the customer's pool), and the numbers each line called, in the order they were rated."""
    where = [RatedCall.customer_id == customer_id, RatedCall.period == period]
    used_where = where + ([RatedCall.line_id == scope] if scope else [])
    used = await session.scalar(select(func.coalesce(func.sum(RatedCall.bundle_s), 0))
                                .where(*used_where))  # fmt: skip
    state = PeriodState(bundle_total_s=0, bundle_used_s=int(used or 0))
    rows = await session.execute(
        select(RatedCall.line_id, RatedCall.callee)
        .where(*used_where)
        .group_by(RatedCall.line_id, RatedCall.callee)
        .order_by(func.min(RatedCall.rated_at), func.min(RatedCall.start_at))
    )
    for line_id, callee in rows:
        state.number_rank(line_id, callee)
    return state


async def _lines_in_period(session: AsyncSession, customer_id: uuid.UUID, period: date) -> int:
    start, end = _month_bounds(period)
    count = await session.scalar(
        select(func.count(Line.id)).where(
            Line.customer_id == customer_id,
            Line.created_at < end,
            or_(Line.deleted_at.is_(None), Line.deleted_at >= start),
        )
    )
    return max(1, int(count or 0))


async def rate_customer(session: AsyncSession, customer_id: uuid.UUID) -> RatingResult:
    """Rate the customer's pending calls, oldest first, in the caller's transaction."""
    # Serialises raters of this customer until commit: the bundle is read then consumed.
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"billing-rating:{customer_id}"},
    )
    # Only the columns rating reads: no ORM objects for what may be a month of calls.
    line_ids = list(await session.scalars(select(Line.id).where(Line.customer_id == customer_id)))
    query = _pending(customer_id, line_ids).with_only_columns(
        Cdr.id, PAYER.label("line_id"), Cdr.start_at, NUMBER.label("number"), Cdr.destination,
        Cdr.billed_s, KEPT_LEG.label("continued"),
    )  # fmt: skip
    calls = (await session.execute(query.order_by(Cdr.start_at, Cdr.id))).all()
    result = RatingResult()
    if not calls:
        return result
    subscriptions = list(
        await session.scalars(select(Subscription).where(Subscription.customer_id == customer_id))
    )
    codes = {s.plan_code for s in subscriptions}
    plans = list(await session.scalars(select(Plan).where(Plan.code.in_(codes))))
    versions: dict[str, list[tuple[date, Plan]]] = defaultdict(list)
    for plan in plans:
        versions[plan.code].append((plan.effective_from, plan))
    indexes = {plan.id: _tariff(plan) for plan in plans}
    states: dict[tuple[date, uuid.UUID | None], PeriodState] = {}
    line_counts: dict[date, int] = {}  # a pooled bundle: lines of the customer in the period
    rows = []
    for cdr in calls:
        if is_emergency(cdr.number, cdr.destination):
            continue  # free, never rated (a record without the emergency mark)
        day = billing_day(cdr.start_at)
        sub = next((s for s in subscriptions if s.starts_on <= day
                    and (s.ends_on is None or day <= s.ends_on)), None)  # fmt: skip
        plan = in_force(versions.get(sub.plan_code, []), day) if sub else None
        line = indexes[plan.id].find(cdr.number) if plan else None
        if plan is None or line is None:
            result.unpriced.append(cdr.id)
            result.unpriced_periods.add(billing_month(cdr.start_at))
            continue
        period = billing_month(cdr.start_at)
        scope = None if plan.bundle_pooled else cdr.line_id
        key = (period, scope)
        if key not in states:
            states[key] = await _period_state(session, customer_id, period, scope)
        state = states[key]
        if scope is None and period not in line_counts:
            line_counts[period] = await _lines_in_period(session, customer_id, period)
        state.bundle_total_s = plan.bundle_s * (line_counts[period] if scope is None else 1)
        call = CallToRate(cdr.id, cdr.line_id, cdr.start_at, cdr.number, cdr.billed_s,
                          continued=bool(cdr.continued))  # fmt: skip
        rated = rate_call(call, line, state)
        rows.append({
            "id": uuid.uuid4(), "cdr_id": cdr.id, "customer_id": customer_id,
            "line_id": cdr.line_id, "period": period, "start_at": cdr.start_at,
            "callee": cdr.number, "plan_id": plan.id, "prefix": rated.prefix,
            "billed_s": cdr.billed_s, "bundle_s": rated.bundle_s, "out_s": rated.out_s,
            "charged_s": rated.charged_s, "amount_cents": rated.amount_cents,
            "vat_rate": rated.vat_rate, "fraud": rated.fraud,
        })  # fmt: skip
    if rows:
        await session.execute(
            insert(RatedCall).execution_options(audited="one record per customer, below"), rows
        )
        cdr_ids = [str(r["cdr_id"]) for r in rows]
        await record(session, RatedCall, customer_id, "rated",
                     after={"calls": len(rows), "cdr_ids": cdr_ids})  # fmt: skip
    result.rated = len(rows)
    if result.unpriced:
        log.warning("billing: %d calls of customer %s have no tariff (no subscription, plan or "
                    "prefix); left unrated", len(result.unpriced), customer_id)  # fmt: skip
    return result


async def rate_pending(session: AsyncSession) -> RatingResult:
    """Rate every customer's pending calls, one transaction per customer (committed here)."""
    customers = list(await session.scalars(_pending().with_only_columns(Line.customer_id)
                                           .distinct()))  # fmt: skip
    total = RatingResult()
    for customer_id in customers:
        part = await rate_customer(session, customer_id)
        await session.commit()
        total.rated += part.rated
        total.unpriced += part.unpriced
    return total


def period_filter(customer_id: uuid.UUID, period: date):
    return and_(RatedCall.customer_id == customer_id, RatedCall.period == period)
