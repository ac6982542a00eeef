"""Contracts, their charges and journal, and the one table of scheduled steps (migration
0021_contracts)."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from centrex.audit.recorder import AUDITED, Audited
from centrex.db.models import Base


class Contract(Base):
    """A customer's subscription contract (art. 10, 20): from its acceptance (with the
    evidence) for its initial term, then renewed tacitly; ``term_ends_on`` is the current
    period's term, moved by the renewal step."""

    __tablename__ = "contracts"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'ending', 'terminated')", name="ck_contracts_status"),
        CheckConstraint("initial_months > 0 AND renewal_months > 0", name="ck_contracts_months"),
        # One contract in force per customer.
        Index(
            "ux_contracts_in_force",
            "customer_id",
            unique=True,
            postgresql_where=text("status <> 'terminated'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    accepted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    evidence: Mapped[str] = mapped_column(Text)  # signed order, email, first service request
    starts_on: Mapped[date] = mapped_column(Date)
    initial_months: Mapped[int] = mapped_column(Integer)
    renewal_months: Mapped[int] = mapped_column(Integer)
    monthly_fee_cents: Mapped[int] = mapped_column(Integer)  # HT, as the order states it
    term_ends_on: Mapped[date] = mapped_column(Date)
    renewals: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(12), default="active")
    # Notice of non-renewal (registered letter) or early termination: by whom, when, why.
    notice_by: Mapped[str | None] = mapped_column(String(12))  # customer | operator
    notice_received_on: Mapped[date | None] = mapped_column(Date)
    termination_kind: Mapped[str | None] = mapped_column(String(20))  # notice | early | breach
    termination_reason: Mapped[str | None] = mapped_column(Text)
    ends_on: Mapped[date | None] = mapped_column(Date)  # effective date
    terminated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ContractCharge(Base):
    """Money the contract makes due outside the monthly run (the early termination fee, a
    device not returned) or owes back (a device's refund: a negative amount), to be carried by
    the customer's next invoice (billing sets ``invoice_id`` and ``invoice_line_id``)."""

    __tablename__ = "contract_charges"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    contract_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contracts.id"), index=True)
    equipment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("equipment.id"))
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    # early_termination | equipment_refund | equipment_not_returned
    kind: Mapped[str] = mapped_column(String(24))
    label: Mapped[str] = mapped_column(String(300))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_cents: Mapped[int] = mapped_column(Integer)
    amount_cents: Mapped[int] = mapped_column(Integer)  # HT
    invoice_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("billing_invoices.id"))
    # The invoice line that carried it (billing, once: docs/billing.md "Contract charges").
    invoice_line_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("billing_invoice_lines.id"), unique=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ContractEvent(Base):
    """The contract's journal: every step that happened to it, when (the injected clock) and
    which scheduled step did it. Append-only."""

    __tablename__ = "contract_events"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    detail: Mapped[str] = mapped_column(Text)
    step_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("scheduled_steps.id"))


class ScheduledStep(Base):
    """One deadline to act on. Claimed ``FOR UPDATE SKIP LOCKED`` and marked done in the
    transaction of its effect: a crash before the commit leaves it pending (done again whole),
    after it done (never again). ``key`` makes scheduling a step twice a no-op."""

    __tablename__ = "scheduled_steps"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'done')", name="ck_scheduled_steps_status"),
        Index("ix_scheduled_steps_due", "due_at", postgresql_where=text("status = 'pending'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(24))  # renew | terminate
    subject_id: Mapped[uuid.UUID] = mapped_column()
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(8), default="pending")
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Equipment(Base):
    """A terminal device lent to a customer (art. 12): the operator's property, rented (monthly
    fee) or provided (a one-off charge, refunded on return less 20 % a year of use)."""

    __tablename__ = "equipment"
    __table_args__ = (
        CheckConstraint("mode IN ('rented', 'provided')", name="ck_equipment_mode"),
        CheckConstraint(
            "status IN ('in_service', 'returned', 'not_returned')", name="ck_equipment_status"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    model: Mapped[str] = mapped_column(String(100))
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    mac: Mapped[str] = mapped_column(String(17), unique=True)
    mode: Mapped[str] = mapped_column(String(8))
    value_cents: Mapped[int] = mapped_column(Integer)  # HT: the provision charge, its value
    monthly_fee_cents: Mapped[int] = mapped_column(Integer)  # rented: HT a month
    line_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("lines.id"))
    provided_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(12), default="in_service")
    returned_on: Mapped[date | None] = mapped_column(Date)
    condition: Mapped[str | None] = mapped_column(String(8))  # good | damaged
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


AUDITED[Contract] = Audited("contract")
AUDITED[Equipment] = Audited("equipment")
AUDITED[ContractCharge] = Audited("contract_charge")
AUDITED[ContractEvent] = Audited("contract_event")
AUDITED[ScheduledStep] = Audited("scheduled_step")
