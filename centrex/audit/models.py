"""The audit log's table. Written only by :mod:`centrex.audit.recorder`, in the transaction of
the change it records; PostgreSQL refuses UPDATE, DELETE and TRUNCATE on it (migration 0016)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Index, String, Text, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from centrex.db.models import Base


class AuditEntry(Base):
    """One change to one object, made through the API: when, by which token, what operation,
    which object, the changed fields' values before and after. Never a secret's value: a secret
    field that changed is only named, in ``withheld``."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at", "id"),
        Index("ix_audit_log_object", "object_type", "object_id", "at"),
        Index("ix_audit_log_token", "token_id", "at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # clock_timestamp, not now(): the rows of one transaction keep the order they were written in.
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp()
    )
    token_id: Mapped[uuid.UUID | None] = mapped_column()  # None: the bootstrap token
    token_name: Mapped[str] = mapped_column(String(200))
    # What was asked: "POST /v1/lines/{line_id}/credentials" (the route's method and template).
    operation: Mapped[str] = mapped_column(String(200))
    object_type: Mapped[str] = mapped_column(String(64))  # "line", "customer", "number", ...
    object_id: Mapped[str] = mapped_column(String(200))  # its key as text ("a/b" if composite)
    # created | updated | deleted, or what an explicit record names ("hung_up", ...)
    change: Mapped[str] = mapped_column(String(32))
    before: Mapped[dict | None] = mapped_column(JSONB)
    after: Mapped[dict | None] = mapped_column(JSONB)
    withheld: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
