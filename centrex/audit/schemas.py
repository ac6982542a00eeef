"""What ``GET /v1/audit`` returns."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    at: datetime
    token_id: uuid.UUID | None = Field(description="The token's id; null for the bootstrap token.")
    token_name: str
    operation: str = Field(description='The route asked: "POST /v1/lines/{line_id}/credentials".')
    object_type: str = Field(description='"line", "customer", "number", "restriction", ...')
    object_id: str
    change: str = Field(description='"created", "updated", "deleted", or e.g. "hung_up".')
    before: dict[str, Any] | None = Field(description="The changed fields' values before.")
    after: dict[str, Any] | None = Field(description="The changed fields' values after.")
    withheld: list[str] = Field(
        description="Secret fields that changed; their values are never recorded."
    )


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page.")
