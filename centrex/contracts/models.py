"""Contracts, their charges and journal, and the one table of scheduled steps (migration
0021_contracts)."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    ARRAY,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
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
            "status IN ('in_service', 'returned', 'not_returned', 'exchanged')",
            name="ck_equipment_status",
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
    condition: Mapped[str | None] = mapped_column(String(8))  # good | damaged; None: unchecked
    checked_on: Mapped[date | None] = mapped_column(Date)  # the condition check (art. 12: 45 days)
    # An exchange under warranty: the device this one replaces (both stay in the ledger).
    replaces_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("equipment.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ServiceInterruption(Base):
    """An interruption of the service (art. 10): the whole customer (``line_ids`` None) or some
    of its lines, from ``started_at`` until ``ended_at`` (None while it lasts). Only those
    attributable to the operator count towards the special termination (30 consecutive days)."""

    __tablename__ = "service_interruptions"
    __table_args__ = (
        CheckConstraint(
            "ended_at IS NULL OR ended_at > started_at", name="ck_service_interruptions_dates"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    line_ids: Mapped[list[uuid.UUID] | None] = mapped_column(ARRAY(Uuid))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cause: Mapped[str] = mapped_column(Text)
    attributable_to_operator: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class EquipmentRepair(Base):
    """A device reported faulty (art. 12): an inherent defect during the initial term is
    repaired or exchanged free; excluded damage (lightning, abnormal use, unauthorised repair)
    or a defect after the warranty is repaired on a quote, charged only once accepted."""

    __tablename__ = "equipment_repairs"
    __table_args__ = (
        CheckConstraint(
            "cause IN ('inherent_defect', 'lightning', 'abnormal_use', 'unauthorised_repair')",
            name="ck_equipment_repairs_cause",
        ),
        CheckConstraint(
            "status IN ('quoted', 'accepted', 'declined', 'done')",
            name="ck_equipment_repairs_status",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    equipment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("equipment.id"), index=True)
    reported_on: Mapped[date] = mapped_column(Date)
    cause: Mapped[str] = mapped_column(String(24))
    action: Mapped[str] = mapped_column(String(8))  # repair | exchange
    covered: Mapped[bool] = mapped_column(Boolean)  # under warranty: free
    status: Mapped[str] = mapped_column(String(8))
    quote_cents: Mapped[int | None] = mapped_column(Integer)  # HT, not covered only
    decided_on: Mapped[date | None] = mapped_column(Date)  # the quote accepted or declined
    replacement_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("equipment.id"))
    charge_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contract_charges.id"))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ContractChange(Base):
    """New conditions or a new tariff notified to the customer (art. 21): conditions take
    effect one month after the notice; a tariff at the renewal the customer can still refuse."""

    __tablename__ = "contract_changes"
    __table_args__ = (
        CheckConstraint("kind IN ('conditions', 'tariff')", name="ck_contract_changes_kind"),
        CheckConstraint(
            "status IN ('notifying', 'notified', 'in_effect', 'lapsed')",
            name="ck_contract_changes_status",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(12))
    summary: Mapped[str] = mapped_column(Text)
    plan_code: Mapped[str | None] = mapped_column(String(32))  # tariff: the plan from renewal
    status: Mapped[str] = mapped_column(String(10))
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # emailed
    effective_on: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DirectoryListing(Base):
    """A number's universal directory preferences (art. 13), chosen by its customer: listed or
    not (free), and opposition to prospection use and to reverse look-up."""

    __tablename__ = "directory_listings"

    e164: Mapped[str] = mapped_column(ForeignKey("numbers.e164"), primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    listed: Mapped[bool] = mapped_column(Boolean)
    listing_name: Mapped[str | None] = mapped_column(String(200))  # None: the customer's name
    opposes_prospection: Mapped[bool] = mapped_column(Boolean)
    opposes_reverse_lookup: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


AUDITED[Contract] = Audited("contract")
AUDITED[ServiceInterruption] = Audited("service_interruption")
AUDITED[EquipmentRepair] = Audited("equipment_repair")
AUDITED[ContractChange] = Audited("contract_change")
AUDITED[DirectoryListing] = Audited("directory_listing")
AUDITED[Equipment] = Audited("equipment")
AUDITED[ContractCharge] = Audited("contract_charge")
AUDITED[ContractEvent] = Audited("contract_event")
AUDITED[ScheduledStep] = Audited("scheduled_step")
