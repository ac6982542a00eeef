"""Each line's feature settings: one row per line that has changed any (a line without one has
the defaults of :class:`centrex.features.rules.LineFeatures`)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from centrex.db.models import Base

# Stored as given after checking (an extension, E.164, or "voicemail"): the daemon re-resolves
# it at each call, so an extension moved or a destination suspended later is seen at once.
TARGET_LENGTH = 24


class LineFeatureSettings(Base):
    __tablename__ = "line_features"
    __table_args__ = (
        CheckConstraint(
            "forward_no_answer_s BETWEEN 5 AND 120", name="ck_line_features_no_answer_s"
        ),
    )

    line_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("lines.id", ondelete="CASCADE"), primary_key=True
    )
    forward_unconditional: Mapped[str | None] = mapped_column(String(TARGET_LENGTH))
    forward_busy: Mapped[str | None] = mapped_column(String(TARGET_LENGTH))
    forward_no_answer: Mapped[str | None] = mapped_column(String(TARGET_LENGTH))
    forward_no_answer_s: Mapped[int] = mapped_column(Integer, default=20, server_default="20")
    forward_unregistered: Mapped[str | None] = mapped_column(String(TARGET_LENGTH))
    dnd: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    privacy: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # Written by the daemon when the line calls an emergency number (rules.in_emergency_callback).
    last_emergency_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class CallForward(Base):
    """A forward the daemon decided, kept until the CDR shipper has written the call's records
    (it then writes the forward's own CDR, ``leg_of`` the call's)."""

    __tablename__ = "call_forwards"

    node: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hop: Mapped[int] = mapped_column(Integer, primary_key=True)
    line_id: Mapped[uuid.UUID] = mapped_column()
    target: Mapped[str] = mapped_column(String(64))
    target_line_id: Mapped[uuid.UUID | None] = mapped_column()
    direction: Mapped[str] = mapped_column(String(16))
    condition: Mapped[str] = mapped_column(String(16))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
