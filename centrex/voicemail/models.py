"""A line's mailbox settings, the platform's default, and the emails of messages.

The messages themselves are files in Asterisk's spool (app_voicemail's file storage): the API
reads them there. Asterisk reads the mailboxes through realtime from the view
``asterisk_voicemail`` (migration 0024), so a change here needs no reload.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from centrex.db.models import Base


class VoicemailBox(Base):
    """Set through the API; a line without a row follows the platform's default."""

    __tablename__ = "voicemail_boxes"

    line_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("lines.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean)
    # Kept as typed: app_voicemail compares it with the digits dialled. Never returned by the
    # API, withheld from the audit trail (centrex/audit/recorder.py).
    pin: Mapped[str | None] = mapped_column(String(8), nullable=True)
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    greeting_seconds: Mapped[float | None] = mapped_column(nullable=True)


class VoicemailPlatform(Base):
    """One row: the platform's default (CENTREX_VOICEMAIL_DEFAULT_ENABLED), written by the API
    at start, read by the realtime view for lines without a row of their own."""

    __tablename__ = "voicemail_platform"
    __table_args__ = (CheckConstraint("id = 1", name="ck_voicemail_platform_one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    default_enabled: Mapped[bool] = mapped_column(Boolean)


class VoicemailDelivery(Base):
    """A message's email: claimed by one API process (the insert), sent, or retried later."""

    __tablename__ = "voicemail_deliveries"
    # The emails still due, in the order they are due (the mailer's claim).
    __table_args__ = (
        Index(
            "ix_voicemail_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("sent_at IS NULL"),
        ),
    )

    msg_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id", ondelete="CASCADE"))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
