"""The operator's policy controls: destinations (art. 6), restrictions of lines and customers
(art. 16, 19), fraud suspicions. Every change is recorded: who, when, why."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import phonenumbers
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.access.principal import Principal
from centrex.config import Settings
from centrex.core.policy import PolicyLevel, period_start
from centrex.db.lookup import get_or_404
from centrex.db.models import Cdr, Customer, Destination, FraudSuspicion, Line, PolicyRestriction
from centrex.services.errors import Conflict, NotFound, ServiceError
from centrex.services.notify import send_email

log = logging.getLogger(__name__)

SPECIAL_DESTINATIONS = {
    "33-free": "France, free special numbers (080x)",
    "33-shared-cost": "France, shared-cost special numbers (081, 082)",
    "33-premium": "France, premium numbers (089)",
}


#: Every E.164 country code, as written ("44", never "044").
COUNTRY_CODES = frozenset(str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
#: What a destination's code may be, as a pattern of the OpenAPI document (POST /v1/destinations).
DESTINATION_CODE = "^(?:{})$".format(
    "|".join(sorted(SPECIAL_DESTINATIONS) + sorted(COUNTRY_CODES, key=int))
)


def check_destination_code(code: str) -> str:
    if code in SPECIAL_DESTINATIONS:
        return SPECIAL_DESTINATIONS[code]
    if code in COUNTRY_CODES:
        regions = phonenumbers.region_codes_for_country_code(int(code))
        return ", ".join(r for r in regions if r != "001") or f"+{code}"
    raise ServiceError(
        "code",
        f"{code!r} is not an E.164 country code (e.g. 44) nor one of "
        f"{', '.join(sorted(SPECIAL_DESTINATIONS))}",
    )


async def add_destination(session: AsyncSession, code: str, name: str | None) -> Destination:
    default_name = check_destination_code(code)
    destination = Destination(code=code, name=name or default_name)
    session.add(destination)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict("code", f"destination {code} is already on the list") from None
    return destination


async def get_destination(session: AsyncSession, code: str) -> Destination:
    return await get_or_404(
        session, Destination, code, "code", f"destination {code} is not on the list"
    )


async def suspend_destination(
    session: AsyncSession, settings: Settings, destination: Destination, *, reason: str,
    actor: str, now: datetime,
) -> tuple[Destination, list[str], list[uuid.UUID]]:  # fmt: skip
    """Refuse calls there from now; notify every customer who called it this billing period.
    Returns (destination, emails notified, customers without an email)."""
    if destination.suspended_at is not None:
        raise Conflict("code", f"destination {destination.code} is already suspended",
                       location="path")  # fmt: skip
    destination.suspended_at = now
    destination.suspended_reason = f"{reason} (by {actor})"
    await session.commit()
    log.warning("destination %s suspended by %s: %s", destination.code, actor, reason)
    rows = await session.execute(
        select(Customer.id, Customer.email)
        .where(
            Customer.id.in_(
                select(Cdr.customer_id).where(
                    Cdr.destination == destination.code,
                    Cdr.start_at >= period_start(now),
                    Cdr.customer_id.is_not(None),
                )
            )
        )
        .order_by(Customer.id)
    )
    customers = rows.all()
    emails = [email for _, email in customers if email]
    missing = [cid for cid, email in customers if not email]
    await send_email(
        settings,
        emails,
        f"Calls to {destination.name} (+{destination.code.split('-')[0]}) suspended",
        f"Dear customer,\n\nYou called {destination.name} this billing period. As of "
        f"{now:%Y-%m-%d %H:%M} UTC, calls to this destination are suspended (contract "
        f"art. 6).\nReason: {reason}\n\nEmergency numbers are not affected.\n",
    )
    return destination, emails, missing


async def resume_destination(session: AsyncSession, destination: Destination, *, actor: str,
                             reason: str) -> Destination:  # fmt: skip
    destination.suspended_at = None
    destination.suspended_reason = None
    await session.commit()
    log.warning("destination %s resumed by %s: %s", destination.code, actor, reason)
    return destination


async def _target_customer(
    session: AsyncSession, target_type: str, target_id: uuid.UUID
) -> uuid.UUID:
    if target_type == "line":
        line = await session.get(Line, target_id)
        if line is None or line.deleted_at is not None:
            raise NotFound("line_id", f"no line with id {target_id}", location="path")
        return line.customer_id
    customer = await get_or_404(
        session, Customer, target_id, "customer_id", f"no customer with id {target_id}"
    )
    return customer.id


async def restrict(
    session: AsyncSession, *, target_type: str, target_id: uuid.UUID, level: PolicyLevel,
    reason: str, actor: str, by: Principal,
) -> PolicyRestriction:  # fmt: skip
    """Suspend or restrict a line or a whole customer: in force from the commit, for every
    line of the target, including lines created later. Nothing is copied onto the lines: the
    daemon reads the restrictions in force with the line (``centrex_policy_level``, migration
    0010), so no way of writing a line can leave one out."""
    await _target_customer(session, target_type, target_id)
    restriction = PolicyRestriction(
        target_type=target_type, target_id=target_id, level=level.value, reason=reason,
        actor=actor, principal=by.name, principal_token_id=by.token_id,
    )  # fmt: skip
    session.add(restriction)
    await session.commit()
    log.warning(
        "%s %s: %s by %s (%s): %s", target_type, target_id, level.value, by.name, actor, reason
    )
    return restriction


async def lift(
    session: AsyncSession, restriction_id: uuid.UUID, *, actor: str, reason: str, by: Principal
) -> PolicyRestriction:
    what = f"no restriction {restriction_id}"
    restriction = await get_or_404(
        session, PolicyRestriction, restriction_id, "restriction_id", what
    )
    if restriction.lifted_at is not None:
        raise Conflict("restriction_id", "already lifted", location="path")
    restriction.lifted_at = datetime.now(UTC)
    restriction.lifted_by = actor
    restriction.lift_reason = reason
    restriction.lifted_by_principal = by.name
    restriction.lifted_by_principal_token_id = by.token_id
    await session.commit()
    log.warning("restriction %s lifted by %s (%s): %s", restriction_id, by.name, actor, reason)
    return restriction


async def restrictions_of(
    session: AsyncSession, target_type: str, target_id: uuid.UUID
) -> list[PolicyRestriction]:
    await _target_customer(session, target_type, target_id)
    rows = await session.scalars(
        select(PolicyRestriction)
        .where(PolicyRestriction.target_type == target_type,
               PolicyRestriction.target_id == target_id)
        .order_by(PolicyRestriction.created_at)
    )  # fmt: skip
    return list(rows.all())


async def suspicions(
    session: AsyncSession, *, line_id: uuid.UUID | None, customer_id: uuid.UUID | None,
    rule: str | None,
) -> list[FraudSuspicion]:  # fmt: skip
    query = select(FraudSuspicion).order_by(FraudSuspicion.created_at)
    if line_id:
        query = query.where(FraudSuspicion.line_id == line_id)
    if customer_id:
        query = query.where(FraudSuspicion.customer_id == customer_id)
    if rule:
        query = query.where(FraudSuspicion.rule == rule)
    return list((await session.scalars(query.limit(1000))).all())
