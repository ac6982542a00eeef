"""The portability API's boundary."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from centrex.api.fields import DateTime, NumberText, Text
from centrex.api.schemas import StrictInput


class PortInIn(StrictInput):
    customer_id: uuid.UUID
    number: NumberText
    rio: Text(32) | None = Field(
        None, description="The number's RIO (12 characters); without one the request is ineligible."
    )
    holder_name: Text(200) = Field(description="The holder's name as on the donor contract.")
    requested_date: date | None = None
    line_id: uuid.UUID | None = None
    ring_group_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def exactly_one(self) -> PortInIn:
        if (self.line_id is None) == (self.ring_group_id is None):
            raise ValueError("give exactly one of line_id and ring_group_id")
        return self


class PortInOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    customer_id: uuid.UUID
    e164: str
    national: str
    holder_name: str
    requested_date: date | None
    line_id: uuid.UUID | None
    ring_group_id: uuid.UUID | None
    status: str
    reason: str | None = Field(description="Why ineligible or refused (contract art. 9.2).")
    detail: str | None
    replacement_e164: str | None = Field(description="The number assigned instead, if any.")
    porting_date: date | None
    slot_start: datetime | None
    slot_end: datetime | None
    donor_contract_ends_on: date | None
    notified_at: datetime | None
    ported_at: datetime | None
    activated_at: datetime | None
    created_at: datetime


class RioOut(BaseModel):
    e164: str
    national: str
    rio: str
    valid_until: datetime | None = Field(description="None while the number is assigned.")


class PortOutIn(StrictInput):
    """Another operator's request for one of our numbers (entered by the operator, or by the
    inter-operator gateway with an operator token)."""

    number: NumberText
    rio: Text(32) | None = None
    recipient_operator: Annotated[str, StringConstraints(pattern=r"^[0-9A-Z]{2}$")] = Field(
        description="The gaining operator's code."
    )
    requested_date: date | None = None
    slot_start: DateTime | None = Field(
        None, description="The slot agreed between operators; else 09:00 Paris on the date."
    )

    @field_validator("slot_start")
    @classmethod
    def aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("a slot needs a time zone")
        return value


class PortOutOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    e164: str
    national: str
    customer_id: uuid.UUID | None
    recipient_operator: str
    status: str
    reason: str | None
    detail: str | None
    porting_date: date | None
    slot_start: datetime | None
    ported_at: datetime | None
    created_at: datetime
