"""A customer's uploaded music on hold. Asterisk reads the classes through realtime from the
view ``asterisk_musiconhold`` (migration 0028), so an upload or a deletion needs no reload."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, func
from sqlalchemy.orm import Mapped, mapped_column

from centrex.db.models import Base


class CustomerMusicOnHold(Base):
    __tablename__ = "customer_music_on_hold"

    customer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    seconds: Mapped[float] = mapped_column()
    size_bytes: Mapped[int] = mapped_column(Integer)
    uploaded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
