"""API bodies of contracts. Money is integer cents HT (as the order states it); days are ISO
text."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from centrex.api.fields import Bool, DateTime, IntRange, Text
from centrex.api.schemas import StrictInput
from centrex.billing.schemas import Code, Day
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
    ground: Literal["early", "interruption"] = Field(
        "early",
        description="early: the fee of the monthly fees left; interruption: the special "
        "termination without fee after 30 consecutive days of interruption attributable to "
        "the operator (art. 10), by the customer only.",
    )
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
    condition: Literal["good", "damaged"] | None = Field(
        None,
        description="The condition check's result, if done on return; else later by "
        "POST /v1/equipment/{id}/condition within 45 days (art. 12).",
    )


class ConditionIn(StrictInput):
    checked_on: Day
    condition: Literal["good", "damaged"]


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
    checked_on: date | None
    replaces_id: uuid.UUID | None


class InterruptionIn(StrictInput):
    customer_id: uuid.UUID
    line_ids: list[uuid.UUID] | None = Field(
        None, max_length=1000, description="The lines interrupted; omitted: the whole service."
    )
    started_at: DateTime
    ended_at: DateTime | None = Field(None, description="Omitted while it lasts.")
    cause: Text(2000)  # type: ignore[valid-type]
    attributable_to_operator: Bool = True


class InterruptionEndIn(StrictInput):
    ended_at: DateTime


class InterruptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    customer_id: uuid.UUID
    line_ids: list[uuid.UUID] | None
    started_at: datetime
    ended_at: datetime | None
    cause: str
    attributable_to_operator: bool


class RepairIn(StrictInput):
    reported_on: Day
    cause: Literal["inherent_defect", "lightning", "abnormal_use", "unauthorised_repair"]
    action: Literal["repair", "exchange"] = "repair"
    note: Text(2000)  # type: ignore[valid-type]
    quote_cents: IntRange(0, 100_000_000) | None = Field(  # type: ignore[valid-type]
        None, description="HT: required when the warranty does not cover it (the quote)."
    )
    replacement_serial: Annotated[str, Field(pattern=r"^[A-Za-z0-9._/-]{1,64}$")] | None = None
    replacement_mac: Annotated[str, Field(pattern=r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")] | None = None


class QuoteDecisionIn(StrictInput):
    decided_on: Day
    accepted: Bool
    replacement_serial: Annotated[str, Field(pattern=r"^[A-Za-z0-9._/-]{1,64}$")] | None = None
    replacement_mac: Annotated[str, Field(pattern=r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")] | None = None


class RepairOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    equipment_id: uuid.UUID
    reported_on: date
    cause: str
    action: str
    covered: bool
    status: str
    quote_cents: int | None
    decided_on: date | None
    replacement_id: uuid.UUID | None
    charge_id: uuid.UUID | None
    note: str


class ChangeIn(StrictInput):
    kind: Literal["conditions", "tariff"]
    summary: Text(5000)  # type: ignore[valid-type]
    plan_code: Code | None = Field(None, description="tariff: the billing plan from the renewal.")


class ChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    contract_id: uuid.UUID
    kind: str
    summary: str
    plan_code: str | None
    status: str
    notified_at: datetime | None
    effective_on: date | None


class DirectoryIn(StrictInput):
    listed: Bool
    listing_name: Text(200) | None = Field(  # type: ignore[valid-type]
        None, description="The professional name published; omitted: the customer's name."
    )
    opposes_prospection: Bool = False
    opposes_reverse_lookup: Bool = False


class DirectoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    e164: str
    customer_id: uuid.UUID
    listed: bool
    listing_name: str | None
    opposes_prospection: bool
    opposes_reverse_lookup: bool
    updated_at: datetime


class ProvisioningOut(BaseModel):
    equipment_id: uuid.UUID
    line_id: uuid.UUID
    server: str
    transport: str
    tls_server: str
    username: str
    realm: str
    secret: None = Field(
        None,
        description="Never shown: only the password's digest hash is stored (centrex/core/"
        "credentials.py). POST /v1/lines/{id}/credentials issues a new one, shown once.",
    )
    secret_note: str
