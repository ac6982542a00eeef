"""The schema: the database is the source of truth, Asterisk a projection of it."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import DateTime, Enum, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    # Server-side defaults (created_at) come back with the INSERT ... RETURNING, so a freshly
    # created object is complete without a lazy load (which async sessions cannot do).
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012


class SyncState(enum.StrEnum):
    """Where a provisioned object stands against Asterisk."""

    pending = "pending"  # written in the DB, not (yet) confirmed in Asterisk
    synced = "synced"  # Asterisk holds exactly what the DB says


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    # The operator's own account reference, if it has one; unique so a retried POST can't
    # create the same customer twice.
    external_ref: Mapped[str | None] = mapped_column(String(100), unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    lines: Mapped[list[Line]] = relationship(back_populates="customer")


class Line(Base):
    """A SIP line: one credential, one registered device at a time (contract art. 17)."""

    __tablename__ = "lines"
    __table_args__ = (
        # A username stays reserved after delete: CDRs and logs keep naming it unambiguously.
        Index("ix_lines_customer_live", "customer_id", postgresql_where=text("deleted_at IS NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    label: Mapped[str] = mapped_column(String(200))
    sip_username: Mapped[str] = mapped_column(String(64), unique=True)
    # Only the digest HA1 (md5 of user:realm:password) is kept: the password itself is shown
    # once, in the create response, and never stored.
    sip_ha1: Mapped[str] = mapped_column(String(32))
    sip_realm: Mapped[str] = mapped_column(String(64))
    max_calls: Mapped[int] = mapped_column(Integer, default=2, server_default="2")
    max_call_duration_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sync_state: Mapped[SyncState] = mapped_column(
        Enum(SyncState, name="sync_state"), default=SyncState.pending
    )
    sync_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    customer: Mapped[Customer] = relationship(back_populates="lines")
