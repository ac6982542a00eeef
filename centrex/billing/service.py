"""The catalogue: plan versions with their tariff lines, and customers' subscriptions. A price
is never edited: a new version takes over from its date (docs/billing.md)."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.billing.models import Plan, Subscription, TariffLineRow
from centrex.billing.rules.money import HUNDRED, cents_half_up
from centrex.billing.schemas import PlanIn, SubscriptionIn
from centrex.db.models import Customer
from centrex.services.errors import Conflict, ServiceError, UnknownReference

RATE_QUANTUM = Decimal("0.000001")


def _ht(amount: Decimal, vat: Decimal, entered_ttc: bool) -> Decimal:
    """Euros HT, exact to the 6th decimal (half up) when entered TTC."""
    if not entered_ttc:
        return amount
    return (amount / (1 + vat / HUNDRED)).quantize(RATE_QUANTUM, rounding=ROUND_HALF_UP)


async def create_plan_version(session: AsyncSession, body: PlanIn, *, today: date) -> Plan:
    """The next version of plan ``body.code``: in force from ``effective_from``, which must come
    after the current version's and not be in the past, unless it is a tariff correction (its
    reason given: its calls are rated again only by an explicit re-rating, rerating.py); a
    plan's first version may be dated back."""
    latest = (
        await session.execute(
            select(func.max(Plan.version), func.max(Plan.effective_from)).where(
                Plan.code == body.code
            )
        )
    ).one()
    if latest[0] is not None:
        if body.effective_from <= latest[1]:
            raise Conflict("effective_from", f"version {latest[0]} is in force from {latest[1]}; "
                           "a new version starts after it")  # fmt: skip
        if body.effective_from < today and body.correction_reason is None:
            raise ServiceError("effective_from", "a new version cannot start in the past "
                               "(unless it is a correction: correction_reason)")  # fmt: skip
        if body.effective_from > today and body.correction_reason is not None:
            raise ServiceError("correction_reason", "a correction starts today or earlier")
    prefixes = [line.prefix for line in body.tariff]
    if len(set(prefixes)) != len(prefixes):
        raise ServiceError("tariff", "each prefix once")
    ttc = body.prices_include_vat
    plan = Plan(
        code=body.code,
        version=(latest[0] or 0) + 1,
        name=body.name,
        effective_from=body.effective_from,
        entered_ttc=ttc,
        line_fee_cents=cents_half_up(_ht(body.line_fee, body.line_fee_vat, ttc)),
        line_fee_vat=body.line_fee_vat,
        access_fee_cents=cents_half_up(_ht(body.access_fee, body.access_fee_vat, ttc)),
        access_fee_vat=body.access_fee_vat,
        bundle_s=body.bundle_s,
        bundle_pooled=body.bundle_pooled,
        correction_reason=body.correction_reason,
        interim_threshold_cents=None
        if body.interim_threshold is None
        else cents_half_up(_ht(body.interim_threshold, body.line_fee_vat, ttc)),
    )
    plan.tariff_lines = [
        TariffLineRow(
            prefix=line.prefix,
            per_minute=_ht(line.per_minute, line.vat_rate, ttc),
            connection_fee=_ht(line.connection_fee, line.vat_rate, ttc),
            min_s=line.min_s,
            first_increment_s=line.first_increment_s,
            increment_s=line.increment_s,
            in_bundle=line.in_bundle,
            vat_rate=line.vat_rate,
        )
        for line in body.tariff
    ]
    session.add(plan)
    await session.flush()
    return plan


async def list_plans(session: AsyncSession) -> list[Plan]:
    return list(await session.scalars(select(Plan).order_by(Plan.code, Plan.version)))


async def subscribe(session: AsyncSession, body: SubscriptionIn) -> Subscription:
    if await session.get(Customer, body.customer_id) is None:
        raise UnknownReference("customer_id", f"no customer with id {body.customer_id}")
    if await session.scalar(select(Plan.id).where(Plan.code == body.plan_code).limit(1)) is None:
        raise UnknownReference("plan_code", f"no plan {body.plan_code!r}")
    if body.ends_on is not None and body.ends_on < body.starts_on:
        raise ServiceError("ends_on", "ends_on comes on or after starts_on")
    overlapping = await session.scalar(
        select(Subscription.id).where(
            Subscription.customer_id == body.customer_id,
            (Subscription.ends_on.is_(None)) | (Subscription.ends_on >= body.starts_on),
            *([Subscription.starts_on <= body.ends_on] if body.ends_on else []),
        )
    )
    if overlapping is not None:
        raise Conflict("starts_on", "the customer already has a subscription on these days")
    subscription = Subscription(**body.model_dump())
    session.add(subscription)
    await session.flush()
    return subscription
