"""Personal data (art. 13): everything the platform holds on a customer, machine readable, and
its erasure where the law allows. The customer is the controller, the operator the processor;
what must be kept is kept (docs/contracts.md: invoices 10 years for accounting, CDRs as the
evidence for their retention period) and the rest pseudonymised."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.audit.recorder import declared, values_of
from centrex.billing.models import Invoice, Payment, Subscription
from centrex.contracts.models import Contract, ContractCharge, ContractEvent, Equipment
from centrex.db.models import Cdr, Customer, Line, PhoneNumber, PolicyRestriction
from centrex.services.errors import Conflict, NotFound
from centrex.voicemail import personal_data as voicemail_data
from centrex.voicemail.spool import Spool

ERASED = "erased (art. 13)"


def _rows(objects: Iterable[object]) -> list[dict[str, Any]]:
    """Column values, secrets left out (a line's digest hash is no personal data to hand out,
    and a credential)."""
    out = []
    for obj in objects:
        secret = declared(type(obj)).secret
        out.append({k: v for k, v in values_of(obj).items() if k not in secret})
    return out


async def _customer(session: AsyncSession, customer_id: uuid.UUID) -> Customer:
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise NotFound("customer_id", f"no customer with id {customer_id}", location="path")
    return customer


async def export(
    session: AsyncSession, customer_id: uuid.UUID, spool: Spool | None = None
) -> dict[str, Any]:
    customer = await _customer(session, customer_id)

    async def all_of(model, *where) -> list[dict[str, Any]]:
        return _rows(await session.scalars(select(model).where(*where)))

    contracts = await all_of(Contract, Contract.customer_id == customer_id)
    contract_ids = [c["id"] for c in contracts]
    out = {
        "customer": _rows([customer])[0],
        "lines": await all_of(Line, Line.customer_id == customer_id),
        "numbers": await all_of(PhoneNumber, PhoneNumber.customer_id == customer_id),
        "restrictions": await all_of(PolicyRestriction, PolicyRestriction.target_id == customer_id),
        "contracts": contracts,
        "contract_events": await all_of(ContractEvent, ContractEvent.contract_id.in_(contract_ids)),
        "charges": await all_of(ContractCharge, ContractCharge.customer_id == customer_id),
        "equipment": await all_of(Equipment, Equipment.customer_id == customer_id),
        "subscriptions": await all_of(Subscription, Subscription.customer_id == customer_id),
        "invoices": await all_of(Invoice, Invoice.customer_id == customer_id),
        "payments": await all_of(Payment, Payment.customer_id == customer_id),
        # CDRs can be millions: counted here, streamed by GET /v1/cdrs.csv?customer_id=.
        "cdrs": {
            "count": await session.scalar(
                select(func.count()).select_from(Cdr).where(Cdr.customer_id == customer_id)
            ),
            "export": f"/v1/cdrs.csv?customer_id={customer_id}",
        },
    }
    if spool is not None:  # mailboxes and messages (centrex/voicemail/personal_data.py)
        lines = list(await session.scalars(select(Line).where(Line.customer_id == customer_id)))
        out["voicemail"] = await voicemail_data.export(session, spool, lines)
    return out


async def erase(
    session: AsyncSession, customer_id: uuid.UUID, *, now: datetime, spool: Spool | None = None
) -> dict:
    """Pseudonymise what identifies the customer's people; refuse while a contract is in force
    (the service needs them). Invoices (append-only, 10 years) and CDRs (evidence) are kept."""
    customer = await _customer(session, customer_id)
    in_force = await session.scalar(
        select(Contract.id).where(
            Contract.customer_id == customer_id, Contract.status != "terminated"
        )
    )
    if in_force is not None:
        raise Conflict("customer_id", "a contract is in force: terminate it first",
                       location="path")  # fmt: skip
    live = await session.scalar(
        select(func.count()).select_from(Line).where(
            Line.customer_id == customer_id, Line.deleted_at.is_(None))
    )  # fmt: skip
    if live:
        raise Conflict("customer_id", f"{live} lines still in service", location="path")
    customer.name = f"erased customer {str(customer_id)[:8]}"
    customer.email = None
    customer.external_ref = None
    lines = list(await session.scalars(select(Line).where(Line.customer_id == customer_id)))
    for line in lines:
        line.label = ERASED
    # Voicemail: messages (audio and metadata) and greetings deleted, mailboxes' emails removed.
    messages = await voicemail_data.erase(session, spool, lines) if spool is not None else 0
    contracts = list(await session.scalars(
        select(Contract).where(Contract.customer_id == customer_id)))  # fmt: skip
    for contract in contracts:
        contract.evidence = ERASED
        contract.termination_reason = ERASED if contract.termination_reason else None
    await session.commit()
    return {"erased_at": now, "customer": customer.name, "lines": len(lines),
            "contracts": len(contracts), "voicemail_messages": messages,
            "kept": ["invoices (accounting, 10 years)", "cdrs (evidence, retention period)",
                     "payments", "numbers' history"]}  # fmt: skip
