"""Contract changes (art. 21): the operator notifies new conditions or a new tariff; the
customer is emailed (a ``change_notify`` step: an SMTP failure puts it off, the scheduler's
rule) and the change takes effect by itself (a ``change_effective`` step):

- new **conditions** one month after the notice;
- a new **tariff** only at a renewal, and (what the contract leaves the customer) only at a
  term the customer can still refuse: the first term whose notice of non-renewal deadline
  (3 months before it) is on or after the day of the notice. The email names that term and
  that deadline. At the term, the contract still active (not under notice), the customer's
  billing subscription moves to the new plan (the current one ends the day before, a new one
  starts on the term: billing's versioned plans do the rest); under notice, the change lapses.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.billing.models import Plan, Subscription
from centrex.config import Settings
from centrex.contracts import rules
from centrex.contracts.models import Contract, ContractChange, ContractEvent, ScheduledStep
from centrex.contracts.schemas import ChangeIn
from centrex.contracts.service import get as get_contract
from centrex.contracts.service import schedule
from centrex.db.models import Customer
from centrex.portability import mailer
from centrex.services.errors import Conflict, ServiceError, UnknownReference


async def notify(
    session: AsyncSession, contract_id: uuid.UUID, body: ChangeIn, *, now: datetime
) -> ContractChange:
    contract = await get_contract(session, contract_id, lock=True)
    if contract.status != "active":
        raise Conflict("contract_id", f"the contract is {contract.status}", location="path")
    if body.kind == "tariff":
        if body.plan_code is None:
            raise ServiceError("plan_code", "a tariff change names the plan from the renewal")
        if (
            await session.scalar(select(Plan.id).where(Plan.code == body.plan_code).limit(1))
            is None
        ):
            raise UnknownReference("plan_code", f"no plan {body.plan_code}")
    elif body.plan_code is not None:
        raise ServiceError("plan_code", "only a tariff change names a plan")
    change = ContractChange(
        contract_id=contract.id,
        kind=body.kind,
        summary=body.summary,
        plan_code=body.plan_code,
        status="notifying",
    )
    session.add(change)
    await session.flush()
    await schedule(session, "change_notify", change.id, rules.paris_day(now))
    await session.commit()
    return change


def _event(contract: Contract, kind: str, at: datetime, detail: str, step: ScheduledStep):
    return ContractEvent(contract_id=contract.id, kind=kind, at=at, detail=detail, step_id=step.id)


async def send_notice(
    session: AsyncSession, step: ScheduledStep, now: datetime, settings: Settings
) -> str:
    change = await session.get(ContractChange, step.subject_id, with_for_update=True)
    if change.status != "notifying":
        return f"nothing to do: {change.status}"
    contract = await session.get(Contract, change.contract_id)
    customer = await session.get(Customer, contract.customer_id)
    today = rules.paris_day(now)
    if change.kind == "conditions":
        effective = rules.conditions_effective_on(today)
        text = f"New conditions of your contract take effect on {effective} (art. 21):\n\n"
    else:
        effective = rules.tariff_change_term(
            contract.starts_on, today, contract.initial_months, contract.renewal_months
        ).start
        needed_by = rules.add_months(effective, -rules.NOTICE_MONTHS)
        text = (
            f"A new tariff applies from the renewal of your contract on {effective} "
            f"(art. 21: tariffs change at renewal). If you do not want it, you may refuse "
            f"the renewal by a registered letter received by {needed_by} (art. 10).\n\n"
        )
    if customer.email:  # sent before the commit: at least once (the scheduler's rule)
        await mailer.send(
            settings, customer.email, "Changes to your contract", text + change.summary + "\n"
        )
    change.status, change.notified_at, change.effective_on = "notified", now, effective
    await schedule(session, "change_effective", change.id, effective)
    to = customer.email or "no email address: in the customer area only"
    session.add(
        _event(
            contract,
            "change_notified",
            now,
            f"{change.kind} change notified ({to}), effective {effective}",
            step,
        )
    )
    return f"notified ({to}): {change.kind} effective {effective}"


async def take_effect(session: AsyncSession, step: ScheduledStep, now: datetime) -> str:
    change = await session.get(ContractChange, step.subject_id, with_for_update=True)
    if change.status != "notified":
        return f"nothing to do: {change.status}"
    contract = await get_contract(session, change.contract_id, lock=True)
    if contract.status == "terminated" or (change.kind == "tariff" and contract.status != "active"):
        change.status = "lapsed"  # the contract ends at that term: it is not renewed
        session.add(
            _event(
                contract,
                "change_lapsed",
                now,
                f"{change.kind} change lapsed: the contract is {contract.status}",
                step,
            )
        )
        return f"lapsed: the contract is {contract.status}"
    detail = f"{change.kind} change in effect"
    if change.kind == "tariff":
        detail += await _move_subscriptions(session, contract, change)
    change.status = "in_effect"
    session.add(_event(contract, "change_in_effect", now, detail, step))
    return detail


async def _move_subscriptions(
    session: AsyncSession, contract: Contract, change: ContractChange
) -> str:
    last_day = change.effective_on - timedelta(days=1)
    moved = 0
    for sub in list(
        await session.scalars(
            select(Subscription)
            .where(
                Subscription.customer_id == contract.customer_id,
                Subscription.starts_on <= last_day,
                Subscription.ends_on.is_(None) | (Subscription.ends_on > last_day),
            )
            .with_for_update()
        )
    ):
        ended, sub.ends_on = sub.ends_on, last_day
        session.add(
            Subscription(
                customer_id=contract.customer_id,
                plan_code=change.plan_code,
                starts_on=change.effective_on,
                ends_on=ended,
                payment_method=sub.payment_method,
            )
        )
        moved += 1
    return f": {moved} subscriptions on plan {change.plan_code} from {change.effective_on}"
