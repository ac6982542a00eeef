"""Contracts: acceptance, notice, early termination (art. 10, 20), and the effects the
scheduler's steps apply (renewal, termination). Every function takes the day or instant it
acts at (an injected clock); the API passes the real one."""

from __future__ import annotations

import logging
import uuid
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.billing.models import Subscription
from centrex.contracts import rules
from centrex.contracts.models import (
    Contract,
    ContractCharge,
    ContractEvent,
    DirectoryListing,
    ScheduledStep,
)
from centrex.contracts.schemas import ContractIn, EarlyTerminationIn, NoticeIn
from centrex.db.models import Customer, Line, NumberStatus, PhoneNumber
from centrex.extensions import service as extensions
from centrex.services.errors import Conflict, NotFound, ServiceError, UnknownReference
from centrex.services.numbers import release_uncommitted
from centrex.services.ring_groups import forget_line

log = logging.getLogger(__name__)


async def schedule(session: AsyncSession, kind: str, subject_id: uuid.UUID, on: date) -> None:
    """A step due at the start of Paris day ``on``; scheduling the same one again is a no-op
    (its key), so a step that schedules its successor can be done again after a crash."""
    key = f"{kind}:{subject_id}:{on.isoformat()}"
    await session.execute(
        insert(ScheduledStep)
        .values(
            id=uuid.uuid4(),
            key=key,
            kind=kind,
            subject_id=subject_id,
            due_at=rules.paris_midnight(on),
            status="pending",
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .execution_options(audited="a schedule entry, not a business object")
    )


def _event(
    contract: Contract, kind: str, at: datetime, detail: str, step_id: uuid.UUID | None = None
) -> ContractEvent:
    return ContractEvent(contract_id=contract.id, kind=kind, at=at, detail=detail, step_id=step_id)


async def create(session: AsyncSession, body: ContractIn, *, now: datetime) -> Contract:
    """A contract in force from its acceptance (the evidence recorded); its first renewal is
    scheduled at the initial term."""
    if await session.get(Customer, body.customer_id) is None:
        raise UnknownReference("customer_id", f"no customer with id {body.customer_id}")
    accepted_at = body.accepted_at or now
    if accepted_at > now:
        raise ServiceError("accepted_at", "an acceptance cannot be in the future")
    starts_on = rules.paris_day(accepted_at)
    contract = Contract(
        customer_id=body.customer_id,
        accepted_at=accepted_at,
        evidence=body.evidence,
        starts_on=starts_on,
        initial_months=body.initial_months,
        renewal_months=body.renewal_months,
        monthly_fee_cents=body.monthly_fee_cents,
        term_ends_on=rules.add_months(starts_on, body.initial_months),
        renewals=0,
        status="active",
    )
    session.add(contract)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise Conflict("customer_id", "the customer already has a contract in force") from None
    session.add(
        _event(contract, "accepted", now, f"accepted at {accepted_at.isoformat()}: {body.evidence}")
    )
    await schedule(session, "renew", contract.id, contract.term_ends_on)
    await session.commit()
    return contract


async def get(session: AsyncSession, contract_id: uuid.UUID, *, lock: bool = False) -> Contract:
    query = select(Contract).where(Contract.id == contract_id)
    contract = await session.scalar(query.with_for_update() if lock else query)
    if contract is None:
        raise NotFound("contract_id", f"no contract {contract_id}", location="path")
    return contract


def _in_force(contract: Contract) -> None:
    if contract.status != "active":
        raise Conflict(
            "contract_id",
            f"the contract is {contract.status} (ends on {contract.ends_on})",
            location="path",
        )


async def give_notice(
    session: AsyncSession, contract_id: uuid.UUID, body: NoticeIn, *, now: datetime
) -> Contract:
    """Notice of non-renewal by registered letter: in time, the contract ends at the term;
    late, refused with the day it needed (the contract then renews tacitly once more)."""
    contract = await get(session, contract_id, lock=True)
    _in_force(contract)
    if body.received_on > rules.paris_day(now):
        raise ServiceError("received_on", "a letter cannot be received in the future")
    decision = rules.notice(
        contract.starts_on, body.received_on, contract.initial_months, contract.renewal_months
    )
    if not decision.accepted:
        raise ServiceError(
            "received_on",
            f"notice received on {body.received_on} is late for the term of {decision.term}: "
            f"it needed to be received by {decision.needed_by} (3 months before the term); "
            f"the contract renews on {decision.term}",
        )
    contract.status = "ending"
    contract.notice_by = body.by
    contract.notice_received_on = body.received_on
    contract.termination_kind = "notice"
    contract.termination_reason = body.reason
    contract.ends_on = decision.term
    session.add(
        _event(
            contract,
            "notice",
            now,
            f"notice by {body.by} received on {body.received_on}: ends on {decision.term}",
        )
    )
    await schedule(session, "terminate", contract.id, decision.term)
    await session.commit()
    return contract


async def terminate_early(
    session: AsyncSession, contract_id: uuid.UUID, body: EarlyTerminationIn, *, now: datetime
) -> Contract:
    """Early termination by the customer, or by the operator for breach: the fee (the monthly
    fees left in the current period) is recorded as a charge, the termination scheduled."""
    contract = await get(session, contract_id, lock=True)
    _in_force(contract)
    today = rules.paris_day(now)
    if body.effective_on < today:
        raise ServiceError("effective_on", f"cannot end a contract in the past (today {today})")
    if body.effective_on >= contract.term_ends_on:
        raise ServiceError(
            "effective_on",
            f"on or after the term ({contract.term_ends_on}): "
            "that is a notice of non-renewal, not an early termination",
        )
    if body.ground == "interruption":
        await _special_termination_allowed(session, contract, body, now)
    await end_early(
        session, contract, body.effective_on, body.by, body.reason, now, ground=body.ground
    )
    await session.commit()
    return contract


async def _special_termination_allowed(
    session: AsyncSession, contract: Contract, body: EarlyTerminationIn, now: datetime
) -> None:
    """Art. 10: the customer may terminate without fee after 30 consecutive days of
    interruption attributable to the operator, as recorded."""
    from centrex.contracts.interruptions import longest  # it imports the schemas of this one

    if body.by != "customer":
        raise ServiceError("by", "the special termination (art. 10) is the customer's right")
    lasted = await longest(session, contract.customer_id, now)
    if lasted < rules.SPECIAL_TERMINATION_AFTER:
        lasted -= timedelta(microseconds=lasted.microseconds)
        raise Conflict(
            "ground",
            "art. 10 special termination needs 30 consecutive days of interruption "
            f"attributable to the operator; the longest recorded lasted {lasted}",
        )


async def end_early(session: AsyncSession, contract: Contract, effective_on: date, by: str,
                    reason: str, now: datetime, *, ground: str = "early") -> None:  # fmt: skip
    """The fee recorded (none for the special termination after an interruption), the
    termination scheduled; in the caller's transaction."""
    today = rules.paris_day(now)
    if ground == "interruption":
        contract.status, contract.notice_by, contract.notice_received_on = "ending", by, today
        contract.termination_kind, contract.termination_reason = "interruption", reason
        contract.ends_on = effective_on
        session.add(
            _event(
                contract,
                "special_termination",
                now,
                f"by {by}, effective {effective_on}, no fee: 30 days of interruption (art. 10)",
            )
        )
        await schedule(session, "terminate", contract.id, effective_on)
        return
    fee = rules.early_termination(
        contract.starts_on,
        effective_on,
        contract.monthly_fee_cents,
        contract.initial_months,
        contract.renewal_months,
    )
    contract.status = "ending"
    contract.notice_by = by
    contract.notice_received_on = today
    contract.termination_kind = "early" if by == "customer" else "breach"
    contract.termination_reason = reason
    contract.ends_on = effective_on
    session.add(
        ContractCharge(
            contract_id=contract.id,
            customer_id=contract.customer_id,
            kind="early_termination",
            label=f"Early termination on {effective_on}: {fee.remaining_months} monthly "
            f"fees left until {fee.period.end}",
            quantity=fee.remaining_months,
            unit_cents=contract.monthly_fee_cents,
            amount_cents=fee.fee_cents,
        )
    )
    session.add(
        _event(
            contract,
            "early_termination",
            now,
            f"by {by}, effective {effective_on}, fee {fee.fee_cents} cents HT",
        )
    )
    await schedule(session, "terminate", contract.id, effective_on)


# --- the steps' effects: in the scheduler's transaction, never committed here ----------------


async def renew(session: AsyncSession, step: ScheduledStep, now: datetime) -> str:
    contract = await get(session, step.subject_id, lock=True)
    if contract.status != "active":
        return f"not renewed: the contract is {contract.status}"
    if rules.paris_midnight(contract.term_ends_on) != step.due_at:
        return "not renewed: the term moved"  # a stale step (never expected)
    old = contract.term_ends_on
    contract.renewals += 1
    contract.term_ends_on = rules.add_months(
        contract.starts_on, contract.initial_months + contract.renewal_months * contract.renewals
    )
    session.add(
        _event(
            contract,
            "renewed",
            now,
            f"renewed tacitly on {old} until {contract.term_ends_on}",
            step.id,
        )
    )
    await schedule(session, "renew", contract.id, contract.term_ends_on)
    return f"renewed until {contract.term_ends_on}"


async def terminate(
    session: AsyncSession, step: ScheduledStep, now: datetime, quarantine_s: int
) -> str:
    """At the effective date: the customer's lines end (soft-deleted; the reconciler removes
    them from Asterisk) and its numbers go to quarantine (their RIO stays valid 40 days from
    the release, centrex/portability)."""
    contract = await get(session, step.subject_id, lock=True)
    if contract.status != "ending":
        return f"nothing to do: the contract is {contract.status}"
    lines = list(
        await session.scalars(
            select(Line)
            .where(Line.customer_id == contract.customer_id, Line.deleted_at.is_(None))
            .with_for_update()
        )
    )
    numbers = list(
        await session.scalars(
            select(PhoneNumber)
            .where(
                PhoneNumber.customer_id == contract.customer_id,
                PhoneNumber.status == NumberStatus.assigned,
            )
            .with_for_update()
        )
    )
    for number in numbers:
        await release_uncommitted(session, number, now=now, quarantine_s=quarantine_s)
    # The numbers leave the directory with the customer (art. 13: its professional details).
    for listing in await session.scalars(
        select(DirectoryListing).where(DirectoryListing.customer_id == contract.customer_id)
    ):
        await session.delete(listing)
    for line in lines:
        line.deleted_at = now
        line.main_number = None
        await forget_line(session, line.id)
        await extensions.free(session, line_id=line.id)
    # Billing stops at the last day of service (its fees in advance end there).
    last_day = contract.ends_on - timedelta(days=1)
    for sub in await session.scalars(
        select(Subscription).where(
            Subscription.customer_id == contract.customer_id,
            Subscription.starts_on <= last_day,
            (Subscription.ends_on.is_(None)) | (Subscription.ends_on > last_day),
        )
    ):
        sub.ends_on = last_day
    from centrex.contracts.equipment import schedule_returns  # it imports this module

    devices = await schedule_returns(session, contract.customer_id, contract.ends_on)
    contract.status = "terminated"
    contract.terminated_at = now
    detail = (
        f"{len(lines)} lines ended, {len(numbers)} numbers released to quarantine, "
        f"{devices} devices to return"
    )
    session.add(_event(contract, "terminated", now, detail, step.id))
    return detail
