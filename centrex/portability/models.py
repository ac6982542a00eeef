"""Port-in requests: one row per request, kept whatever became of it (the customer and the
operator read why it was refused, and which number was given instead)."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, DateTime, ForeignKey, Index, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from centrex.db.models import Base

# A request in one of these states holds its number: a second one for the same number cannot be
# inserted (the partial unique index below), so of two simultaneous requests exactly one
# proceeds, whatever the number of API processes.
HOLDING_STATES = "status IN ('requested', 'accepted', 'ported')"


class PortIn(Base):
    __tablename__ = "port_ins"
    __table_args__ = (
        Index(
            "ux_port_ins_in_progress", "e164", unique=True, postgresql_where=text(HOLDING_STATES)
        ),
        CheckConstraint(
            "line_id IS NULL OR ring_group_id IS NULL", name="ck_port_ins_one_destination"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    e164: Mapped[str] = mapped_column(String(16))
    national: Mapped[str] = mapped_column(String(10))
    rio: Mapped[str | None] = mapped_column(String(12))
    holder_name: Mapped[str] = mapped_column(String(200))
    requested_date: Mapped[date | None] = mapped_column(Date)
    line_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("lines.id"))
    ring_group_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ring_groups.id"))
    status: Mapped[str] = mapped_column(String(12))  # rules.PortStatus
    reason: Mapped[str | None] = mapped_column(String(24))  # rules.Ineligible, or "donor"
    detail: Mapped[str | None] = mapped_column(Text)  # the reason in words
    replacement_e164: Mapped[str | None] = mapped_column(String(16))
    donor_reference: Mapped[str | None] = mapped_column(String(64))
    porting_date: Mapped[date | None] = mapped_column(Date)
    slot_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    slot_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Porting ends the customer's contract with the donor on the porting day (art. 9.2).
    donor_contract_ends_on: Mapped[date | None] = mapped_column(Date)
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class PortOut(Base):
    """Another operator's request for one of our numbers: checked like a port-in (the RIO is
    ours), and at the slot the number leaves the customer and the inventory."""

    __tablename__ = "port_outs"
    __table_args__ = (
        Index(
            "ux_port_outs_in_progress",
            "e164",
            unique=True,
            postgresql_where=text("status = 'accepted'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    e164: Mapped[str] = mapped_column(String(16))
    national: Mapped[str] = mapped_column(String(10))
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id"))
    rio: Mapped[str | None] = mapped_column(String(12))
    recipient_operator: Mapped[str] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(12))  # accepted, ported, ineligible, cancelled
    reason: Mapped[str | None] = mapped_column(String(24))
    detail: Mapped[str | None] = mapped_column(Text)
    porting_date: Mapped[date | None] = mapped_column(Date)
    slot_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
