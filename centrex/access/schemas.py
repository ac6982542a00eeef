"""Bodies of the token routes."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from centrex.access.principal import Scope
from centrex.api.fields import NO_NUL, DateTime


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1, max_length=100, pattern=NO_NUL, description="Who or what holds it."
    )
    scope: Scope
    customer_id: uuid.UUID | None = Field(
        None, description="The customer a `customer` token is bound to; none for the others."
    )
    expires_at: DateTime | None = Field(None, description="Refused from then on; none: never.")


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    scope: Scope
    customer_id: uuid.UUID | None
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenIssued(TokenOut):
    token: str = Field(description="The bearer token: shown this once, only a hash is kept.")
