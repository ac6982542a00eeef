"""The number inventory: blocks the operator holds, random allocation, Silver/Gold, quarantine.

Contract art. 9: numbers are allocated at random, never chosen, except Silver and Gold numbers a
customer may pick for a fee; French numbers only for customers residing in metropolitan France
with their documents checked; a number is assigned, never owned.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.audit.recorder import record
from centrex.core.number_tiers import Tier, TierRule, classify_tier
from centrex.core.numbering import NumberError, NumberKind, parse_french_number
from centrex.db.lookup import get_or_404
from centrex.db.models import Customer, Line, NumberBlock, NumberStatus, NumberTierRule, PhoneNumber
from centrex.services.errors import Conflict, ServiceError, UnknownReference

MAX_BLOCK_SIZE = 10_000  # an ARCEP block: 0ZABPQ followed by four digits
METROPOLITAN_FRANCE = "FR"


def _parse(field: str, text: str):
    try:
        return parse_french_number(text)
    except NumberError as exc:
        raise ServiceError(field, str(exc)) from None


async def tier_rules(session: AsyncSession) -> list[TierRule]:
    rows = await session.scalars(select(NumberTierRule))
    return [TierRule(Tier(r.tier), r.name, r.pattern, r.monthly_fee_cents) for r in rows]


def _fee(kind: NumberKind, rule: TierRule | None, special_fee_cents: int) -> int:
    fee = rule.monthly_fee_cents if rule else 0
    if kind in (NumberKind.special_free, NumberKind.special_charged):
        fee += special_fee_cents
    return fee


async def load_block(
    session: AsyncSession, first: str, last: str, *, special_fee_cents: int
) -> NumberBlock:
    start, end = _parse("first", first), _parse("last", last)
    if not start.allocatable:
        raise ServiceError("first", f"{start.kind} numbers are not allocatable on this platform")
    if (start.kind, start.zone) != (end.kind, end.zone):
        raise ServiceError("last", "first and last must be numbers of the same kind and zone")
    size = int(end.national) - int(start.national) + 1
    if size < 1:
        raise ServiceError("last", "last must not come before first")
    if size > MAX_BLOCK_SIZE:
        raise ServiceError("last", f"a block holds at most {MAX_BLOCK_SIZE} numbers, not {size}")
    taken = await session.scalar(
        select(func.count())
        .select_from(PhoneNumber)
        .where(PhoneNumber.national.between(start.national, end.national))
    )
    if taken:
        raise Conflict("first", f"{taken} numbers of this range are already in the inventory")
    block = NumberBlock(
        first_e164=start.e164,
        last_e164=end.e164,
        size=size,
        kind=start.kind,
        zone=start.zone,
    )
    session.add(block)
    await session.flush()
    rules = await tier_rules(session)
    rows = []
    for value in range(int(start.national), int(end.national) + 1):
        national = f"0{value}"
        rule = classify_tier(national, rules)
        rows.append(
            {
                "e164": "+33" + national[1:],
                "national": national,
                "block_id": block.id,
                "kind": start.kind,
                "zone": start.zone,
                "tier": rule.tier if rule else None,
                "status": NumberStatus.free,
                "monthly_fee_cents": _fee(start.kind, rule, special_fee_cents),
            }
        )
    # Recorded as the block's creation (its range), not one audit row per number.
    await session.execute(
        insert(PhoneNumber).execution_options(audited="the number block's row"), rows
    )
    await session.commit()
    return block


async def reclassify_free_numbers(session: AsyncSession, *, special_fee_cents: int) -> int:
    """After the rules changed: every free number gets the tier (and fee) the rules give it."""
    rules = await tier_rules(session)
    changed = 0
    rows = await session.scalars(select(PhoneNumber).where(PhoneNumber.status == NumberStatus.free))
    for number in rows:
        rule = classify_tier(number.national, rules)
        tier = rule.tier.value if rule else None
        if number.tier != tier:
            number.tier = tier
            number.monthly_fee_cents = _fee(NumberKind(number.kind), rule, special_fee_cents)
            changed += 1
    await session.commit()
    return changed


def _check_eligible(customer: Customer) -> None:
    if customer.residence_country != METROPOLITAN_FRANCE:
        where = customer.residence_country or "not recorded"
        raise ServiceError(
            "customer_id",
            "French numbers are only for customers residing in metropolitan France "
            f"(contract art. 9); this customer's residence is {where}",
        )
    if customer.documents_verified_at is None:
        raise ServiceError(
            "customer_id",
            "French numbers need the customer's supporting documents to be verified first "
            "(contract art. 9); set documents_verified on the customer",
        )


async def allocate(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    kind: NumberKind,
    zone: str | None,
    number: str | None,
    now: datetime,
) -> PhoneNumber:
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise UnknownReference("customer_id", f"no customer with id {customer_id}")
    _check_eligible(customer)
    if kind not in (
        NumberKind.geographic,
        NumberKind.non_geographic,
        NumberKind.special_free,
        NumberKind.special_charged,
    ):
        raise ServiceError("kind", f"{kind} numbers are not allocatable on this platform")
    if zone is not None and kind is not NumberKind.geographic:
        raise ServiceError("zone", "only geographic numbers have a zone")
    free = (PhoneNumber.status == NumberStatus.free) & (
        (PhoneNumber.quarantine_until.is_(None)) | (PhoneNumber.quarantine_until <= now)
    )
    if number is not None:
        wanted = _parse("number", number)
        query = select(PhoneNumber).where(PhoneNumber.e164 == wanted.e164).with_for_update()
        chosen = await session.scalar(query)
        if chosen is None:
            raise ServiceError("number", f"{wanted.national} is not in the inventory")
        if chosen.tier is None:
            raise ServiceError(
                "number",
                "numbers are allocated at random (contract art. 9); only Silver and Gold "
                "numbers can be picked",
            )
        if chosen.status != NumberStatus.free or (
            chosen.quarantine_until is not None and chosen.quarantine_until > now
        ):
            raise Conflict("number", f"{wanted.national} is not free")
        if chosen.kind != kind:
            raise ServiceError("kind", f"{wanted.national} is a {chosen.kind} number")
    else:
        query = (
            select(PhoneNumber)
            .where(free, PhoneNumber.kind == kind, PhoneNumber.tier.is_(None))
            # Uniform among the free numbers; SKIP LOCKED: concurrent allocations never wait
            # for, nor hand out, the same number.
            .order_by(func.random())
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if zone is not None:
            query = query.where(PhoneNumber.zone == zone)
        chosen = await session.scalar(query)
        if chosen is None:
            where = f" in zone {zone}" if zone else ""
            raise Conflict("kind", f"no free {kind} number{where} in the inventory")
    chosen.status = NumberStatus.assigned
    chosen.customer_id = customer_id
    chosen.assigned_at = now
    chosen.released_at = None
    chosen.quarantine_until = None
    await session.commit()
    return chosen


async def get_number(session: AsyncSession, text: str) -> PhoneNumber:
    parsed = _parse("number", text)
    return await get_or_404(
        session, PhoneNumber, parsed.e164, "number", f"{parsed.national} is not in the inventory"
    )


async def release(
    session: AsyncSession, number: PhoneNumber, *, now: datetime, quarantine_s: int
) -> PhoneNumber:
    if number.status != NumberStatus.assigned:
        raise Conflict("number", f"{number.national} is not assigned", location="path")
    await release_uncommitted(session, number, now=now, quarantine_s=quarantine_s)
    await session.commit()
    return number


async def release_uncommitted(
    session: AsyncSession, number: PhoneNumber, *, now: datetime, quarantine_s: int
) -> None:
    """Release in the caller's transaction (a contract's termination step commits it with the
    step marked done)."""
    # Released: it leads nowhere any more, and is no line's caller ID.
    unnumbered = await session.scalars(
        update(Line)
        .where(Line.main_number == number.e164)
        .values(main_number=None)
        .returning(Line.id)
        .execution_options(audited="record() below")
    )
    for line_id in unnumbered.all():
        before, after = {"main_number": number.e164}, {"main_number": None}
        await record(session, Line, line_id, "updated", before=before, after=after)
    number.line_id = None
    number.ring_group_id = None
    number.status = NumberStatus.free
    number.customer_id = None
    number.released_at = now
    number.quarantine_until = now + timedelta(seconds=quarantine_s)


def utcnow() -> datetime:
    return datetime.now(UTC)
