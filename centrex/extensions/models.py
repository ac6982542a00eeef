"""Which line or ring group each extension of a customer names: one table for both, so an
extension is unique within its customer whatever it names (the primary key says so)."""

from __future__ import annotations

import uuid

from sqlalchemy import CheckConstraint, ForeignKey, String, select
from sqlalchemy.orm import Mapped, column_property, mapped_column

from centrex.db.models import Base, Line, RingGroup


class Extension(Base):
    __tablename__ = "extensions"
    __table_args__ = (
        CheckConstraint(
            "(line_id IS NULL) <> (ring_group_id IS NULL)", name="ck_extensions_one_target"
        ),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    extension: Mapped[str] = mapped_column(String(6), primary_key=True)
    line_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("lines.id", ondelete="CASCADE"), unique=True
    )
    ring_group_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("ring_groups.id", ondelete="CASCADE"), unique=True
    )


# Read with the line or the group, in the same SELECT; written by centrex.extensions.service.
# Not expired when the line itself is written (it lives in another table): the service
# refreshes it after changing it.
Line.extension = column_property(
    select(Extension.extension).where(Extension.line_id == Line.id).scalar_subquery(),
    expire_on_flush=False,
)
RingGroup.extension = column_property(
    select(Extension.extension).where(Extension.ring_group_id == RingGroup.id).scalar_subquery(),
    expire_on_flush=False,
)
