"""API bodies of contracts. Money is integer cents HT (as the order states it); days are ISO
text."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from centrex.api.fields import DateTime, IntRange, Text
from centrex.api.schemas import StrictInput
from centrex.billing.schemas import Day
from centrex.contracts import rules


class ContractIn(StrictInput):
    customer_id: uuid.UUID
    evidence: Text(2000) = Field(  # type: ignore[valid-type]
        description="What shows the acceptance: signed order reference, email, first service "
        "request (art. 10)."
    )
    accepted_at: DateTime | None = Field(None, description="Default: now.")
    initial_months: IntRange(1, 120) = rules.INITIAL_MONTHS  # type: ignore[valid-type]
    renewal_months: IntRange(1, 120) = rules.RENEWAL_MONTHS  # type: ignore[valid-type]
    monthly_fee_cents: IntRange(0, 100_000_000) = Field(  # type: ignore[valid-type]
        description="The order's monthly fees HT, in cents: the early termination fee's unit."
    )


class NoticeIn(StrictInput):
    received_on: Day = Field(description="The registered letter's date of receipt.")
    by: Literal["customer", "operator"] = "customer"
    reason: Text(2000) | None = None  # type: ignore[valid-type]


class EarlyTerminationIn(StrictInput):
    effective_on: Day = Field(description="The day the contract ends (lines and numbers go).")
    by: Literal["customer", "operator"] = "customer"
    reason: Text(2000) = Field(  # type: ignore[valid-type]
        description="The customer's request, or the operator's breach ground."
    )


class ContractOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    customer_id: uuid.UUID
    accepted_at: datetime
    evidence: str
    starts_on: date
    initial_months: int
    renewal_months: int
    monthly_fee_cents: int
    term_ends_on: date
    renewals: int
    status: str
    notice_by: str | None
    notice_received_on: date | None
    termination_kind: str | None
    ends_on: date | None
    terminated_at: datetime | None


class ChargeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    kind: str
    label: str
    quantity: int
    unit_cents: int
    amount_cents: int
    invoice_id: uuid.UUID | None


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    kind: str
    at: datetime
    detail: str


class EquipmentIn(StrictInput):
    customer_id: uuid.UUID
    model: Text(100)  # type: ignore[valid-type]
    serial: Annotated[str, Field(pattern=r"^[A-Za-z0-9._/-]{1,64}$")]
    mac: Annotated[
        str,
        Field(
            pattern=r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$", description="Lower-case, colon-separated."
        ),
    ]
    mode: Literal["rented", "provided"]
    value_cents: IntRange(0, 100_000_000) = Field(  # type: ignore[valid-type]
        description="HT: the one-off charge of a provided device, what a lost one costs."
    )
    monthly_fee_cents: IntRange(0, 100_000_000) = 0  # type: ignore[valid-type]
    line_id: uuid.UUID | None = None
    provided_on: Day


class ReturnIn(StrictInput):
    returned_on: Day
    condition: Literal["good", "damaged"] = Field(description="The condition check's result.")


class EquipmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    customer_id: uuid.UUID
    model: str
    serial: str
    mac: str
    mode: str
    value_cents: int
    monthly_fee_cents: int
    line_id: uuid.UUID | None
    provided_on: date
    status: str
    returned_on: date | None
    condition: str | None
