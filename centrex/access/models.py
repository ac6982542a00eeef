"""API tokens: who may call the API. Only a hash of each token's secret is kept."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from centrex.db.models import Base


class ApiToken(Base):
    __tablename__ = "api_tokens"
    __table_args__ = (
        Index("ix_api_tokens_customer", "customer_id"),
        CheckConstraint(
            "scope IN ('operator', 'operator:read', 'customer')", name="ck_api_tokens_scope"
        ),
        # A customer token names its customer; an operator token none.
        CheckConstraint(
            "(scope = 'customer') = (customer_id IS NOT NULL)", name="ck_api_tokens_customer"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id"))
    # sha256 of the secret part, hex: the secret itself is shown once and never stored.
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_by: Mapped[str] = mapped_column(String(100))  # the issuing principal's name
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
