"""Non-payment (art. 19) as scheduled steps: every invoice past due gets a ``reminder`` step the
day after its due date; unpaid then, the customer is emailed a reminder and a ``suspend`` step
is scheduled 15 days later; unpaid then, the customer is suspended (the policy's customer
restriction: emergency calls still go through) with a notice by email; unpaid 7 days more, the
contract may be terminated (``nonpayment_end``: by setting, else the operator). A payment
that settles every invoice a suspension was for lifts it at once (``lift_if_settled``, in the
payment's transaction).

Emails go out inside the step's transaction, before its commit: a crash between the two sends
the message again at the next run (at least once; never a step's effect twice)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Text, and_, cast, exists, func, literal, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.billing.models import Dispute, Invoice, Payment
from centrex.config import Settings
from centrex.contracts import rules
from centrex.contracts.models import Contract, ScheduledStep
from centrex.contracts.service import end_early, schedule
from centrex.core.policy import PolicyLevel
from centrex.db.models import Customer, PolicyRestriction
from centrex.services.notify import send_email

ACTOR = "non-payment"  # the restrictions this module sets and lifts, and only those


async def unpaid_cents(session: AsyncSession, invoice: Invoice) -> int:
    """TTC - payments + rejects - the disputed parts pending or upheld (art. 11.3: a dispute
    suspends payment of its part only)."""
    paid = await session.scalar(
        select(func.coalesce(func.sum(Payment.amount_cents), 0)).where(
            Payment.invoice_id == invoice.id, Payment.kind == "payment")
    )  # fmt: skip
    rejected = await session.scalar(
        select(func.coalesce(func.sum(Payment.amount_cents), 0)).where(
            Payment.invoice_id == invoice.id, Payment.kind == "reject")
    )  # fmt: skip
    disputed = await session.scalar(
        select(func.coalesce(func.sum(Dispute.amount_ttc_cents), 0)).where(
            Dispute.invoice_id == invoice.id, Dispute.status.in_(("pending", "upheld")))
    )  # fmt: skip
    return invoice.ttc_cents - int(paid) + int(rejected) - int(disputed)


async def schedule_reminders(session: AsyncSession, now: datetime) -> None:
    """A reminder step for every invoice past due that has none (one statement; the step
    itself looks whether it is still unpaid)."""
    today = rules.paris_day(now)
    due_at = func.timezone("Europe/Paris", cast(Invoice.due_on + 1, DateTime()))
    key = func.concat("reminder:", Invoice.id, ":", cast(Invoice.due_on + 1, Text()))
    candidates = select(
        func.gen_random_uuid(), key, literal("reminder"), Invoice.id, due_at, literal("pending")
    ).where(
        Invoice.kind.in_(("invoice", "interim")),
        Invoice.due_on < today,
        ~exists().where(and_(ScheduledStep.kind == "reminder",
                             ScheduledStep.subject_id == Invoice.id)),
    )  # fmt: skip
    await session.execute(
        insert(ScheduledStep)
        .from_select(["id", "key", "kind", "subject_id", "due_at", "status"], candidates)
        .on_conflict_do_nothing(index_elements=["key"])
        .execution_options(audited="schedule entries, not business objects")
    )


async def _invoice_and_customer(session: AsyncSession, step: ScheduledStep):
    invoice = await session.get(Invoice, step.subject_id)
    return invoice, await session.get(Customer, invoice.customer_id)


def _euros(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d} €"


async def remind(session: AsyncSession, step: ScheduledStep, now: datetime,
                 settings: Settings) -> str:  # fmt: skip
    invoice, customer = await _invoice_and_customer(session, step)
    unpaid = await unpaid_cents(session, invoice)
    if unpaid <= 0:
        return "paid: no reminder"
    suspension_on = rules.paris_day(step.due_at) + rules.SUSPENSION_AFTER_REMINDER
    if customer.email:
        await send_email(
            settings, [customer.email], f"Reminder: invoice {invoice.reference} is unpaid",
            f"Invoice {invoice.reference} of {invoice.issued_on} was due on {invoice.due_on}; "
            f"{_euros(unpaid)} incl. VAT is still unpaid.\nUnless it is paid, your service will "
            f"be suspended on {suspension_on} (contract art. 19); emergency calls will still go "
            f"through.\n",
        )  # fmt: skip
    await schedule(session, "suspend", invoice.id, suspension_on)
    to = customer.email or "no email address: in the customer area only"
    return f"reminded ({to}): {unpaid} cents unpaid; suspension on {suspension_on}"


async def suspend(session: AsyncSession, step: ScheduledStep, now: datetime,
                  settings: Settings) -> str:  # fmt: skip
    invoice, customer = await _invoice_and_customer(session, step)
    unpaid = await unpaid_cents(session, invoice)
    if unpaid <= 0:
        return "paid: not suspended"
    in_force = await session.scalar(
        select(PolicyRestriction.id).where(
            PolicyRestriction.target_type == "customer", PolicyRestriction.target_id == customer.id,
            PolicyRestriction.actor == ACTOR, PolicyRestriction.lifted_at.is_(None)).limit(1)
    )  # fmt: skip
    if in_force is None:
        if customer.email:  # the notice first (art. 19)
            await send_email(
                settings, [customer.email], "Your service is suspended for non-payment",
                f"Invoice {invoice.reference} ({_euros(unpaid)} incl. VAT unpaid) was not paid "
                f"15 days after our reminder: your service is suspended from now (contract art. "
                f"19). Emergency calls still go through. Payment lifts the suspension at "
                f"once; if it persists 7 days, the contract may be terminated.\n",
            )  # fmt: skip
        session.add(PolicyRestriction(
            target_type="customer", target_id=customer.id, level=PolicyLevel.suspended.value,
            reason=f"invoice {invoice.reference} unpaid 15 days after the reminder (art. 19)",
            actor=ACTOR, created_at=now,
        ))  # fmt: skip
    persists_on = rules.paris_day(step.due_at) + rules.TERMINATION_AFTER_SUSPENSION
    await schedule(session, "nonpayment_end", invoice.id, persists_on)
    return f"suspended: {unpaid} cents unpaid; termination possible on {persists_on}"


async def end_if_persisting(session: AsyncSession, step: ScheduledStep, now: datetime,
                            settings: Settings) -> str:  # fmt: skip
    """7 days after the suspension, still unpaid: the contract may be terminated (art. 19):
    by the operator's decision, or here when CENTREX_CONTRACTS_NONPAYMENT_TERMINATE is set
    (an early termination for breach from today, its fee recorded)."""
    invoice, customer = await _invoice_and_customer(session, step)
    unpaid = await unpaid_cents(session, invoice)
    if unpaid <= 0:
        return "paid: the contract goes on"
    contract = await session.scalar(
        select(Contract).where(Contract.customer_id == customer.id, Contract.status == "active")
        .with_for_update()
    )  # fmt: skip
    if contract is None:
        return "no contract in force to terminate"
    if not settings.contracts_nonpayment_terminate:
        return "unpaid 7 days after the suspension: termination possible (operator's decision)"
    today = rules.paris_day(now)
    await end_early(session, contract, today, "operator",
                    f"invoice {invoice.reference} unpaid 7 days after the suspension (art. 19)",
                    now)  # fmt: skip
    return f"terminated for non-payment from {today}"


async def lift_if_settled(session: AsyncSession, customer_id: uuid.UUID, now: datetime) -> int:
    """Lift the customer's non-payment suspensions when every invoice one was for is paid;
    returns how many were lifted. In the caller's transaction."""
    restrictions = list(await session.scalars(
        select(PolicyRestriction).where(
            PolicyRestriction.target_type == "customer", PolicyRestriction.target_id == customer_id,
            PolicyRestriction.actor == ACTOR, PolicyRestriction.lifted_at.is_(None))
        .with_for_update()
    ))  # fmt: skip
    if not restrictions:
        return 0
    await session.flush()  # the payment being recorded counts
    suspended_for = await session.scalars(
        select(Invoice).join(ScheduledStep, and_(ScheduledStep.subject_id == Invoice.id,
                                                 ScheduledStep.kind == "suspend"))
        .where(Invoice.customer_id == customer_id, ScheduledStep.status == "done")
    )  # fmt: skip
    for invoice in suspended_for:
        if await unpaid_cents(session, invoice) > 0:
            return 0
    for restriction in restrictions:
        restriction.lifted_at = now
        restriction.lifted_by = ACTOR
        restriction.lift_reason = "paid (art. 19: payment lifts the suspension at once)"
    return len(restrictions)
