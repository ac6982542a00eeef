"""The bank's return files imported (pain.002, camt.054: centrex/billing/bankfile.py) and each
entry they booked against a collected invoice. Append-only, like the payments they make: a file
is imported once (its SHA-256 and its message id are unique), an invoice is rejected, settled
or returned at most once each."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from centrex.audit.recorder import AUDITED, Audited
from centrex.db.models import Base


class BankFileRow(Base):
    __tablename__ = "billing_bank_files"
    __table_args__ = (UniqueConstraint("kind", "message_id", name="uq_billing_bank_files_message"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(20))  # pain.002.001.11 | camt.054.001.08
    message_id: Mapped[str] = mapped_column(String(35))  # the bank's GrpHdr/MsgId
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    entries: Mapped[int] = mapped_column(Integer)
    xml: Mapped[str] = mapped_column(Text)  # kept as received: every payment traces to it
    imported_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class BankEntryRow(Base):
    __tablename__ = "billing_bank_entries"
    __table_args__ = (
        UniqueConstraint("invoice_id", "outcome", name="uq_billing_bank_entries_outcome"),
        CheckConstraint(
            "outcome IN ('rejected', 'settled', 'returned')", name="ck_billing_bank_entries"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    file_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_bank_files.id"), index=True)
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_invoices.id"))
    outcome: Mapped[str] = mapped_column(String(10))
    end_to_end_id: Mapped[str] = mapped_column(String(35))
    mandate_reference: Mapped[str | None] = mapped_column(String(35))
    amount_cents: Mapped[int] = mapped_column(Integer)
    booked_on: Mapped[date] = mapped_column(Date)
    reason: Mapped[str | None] = mapped_column(String(35))  # ISO reason code: AM04, MD06...
    # The money it moved (settled: a payment; returned, or a reject of a debit booked as paid:
    # a reject); none for a debit rejected before any money was booked.
    payment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("billing_payments.id"))


AUDITED[BankFileRow] = Audited("billing_bank_file")
AUDITED[BankEntryRow] = Audited("billing_bank_entry")
