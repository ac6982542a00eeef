"""API bodies of billing. Amounts are decimal euros as the operator types them (strings or
numbers, never kept as floats), at most 6 decimals."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from centrex.api.schemas import StrictInput

Euros = Annotated[Decimal, Field(ge=0, le=Decimal(1_000_000), max_digits=13, decimal_places=6)]
Vat = Annotated[Decimal, Field(ge=0, le=100, max_digits=5, decimal_places=2)]
Code = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
Seconds = Annotated[int, Field(ge=0, le=3600)]
Increment = Annotated[int, Field(ge=1, le=3600)]


class TariffLineIn(StrictInput):
    prefix: Annotated[str, Field(pattern=r"^[1-9][0-9]{0,14}$", description="E.164 digits, no +")]
    per_minute: Euros
    connection_fee: Euros = Decimal(0)
    min_s: Seconds = 0
    first_increment_s: Increment = 60
    increment_s: Increment = 60
    in_bundle: bool = False
    vat_rate: Vat = Decimal(20)


class PlanIn(StrictInput):
    code: Code
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]
    effective_from: date
    prices_include_vat: bool = Field(
        description="True: the amounts are TTC, as the contract states them; HT is derived."
    )
    line_fee: Euros
    line_fee_vat: Vat = Decimal(20)
    access_fee: Euros = Decimal(0)
    access_fee_vat: Vat = Decimal(20)
    bundle_s: Annotated[int, Field(ge=0, le=100_000_000, description="Seconds a line, a month")] = 0
    bundle_pooled: bool = False
    tariff: Annotated[list[TariffLineIn], Field(min_length=1, max_length=5000)]


class TariffLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    prefix: str
    per_minute: Decimal
    connection_fee: Decimal
    min_s: int
    first_increment_s: int
    increment_s: int
    in_bundle: bool
    vat_rate: Decimal


class PlanOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    code: str
    version: int
    name: str
    effective_from: date
    entered_ttc: bool
    line_fee_cents: int
    line_fee_vat: Decimal
    access_fee_cents: int
    access_fee_vat: Decimal
    bundle_s: int
    bundle_pooled: bool
    created_at: datetime
    tariff_lines: list[TariffLineOut]


class SubscriptionIn(StrictInput):
    customer_id: uuid.UUID
    plan_code: Code
    starts_on: date
    ends_on: date | None = None
    payment_method: Literal["sepa", "transfer", "cheque"] = "sepa"


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    customer_id: uuid.UUID
    plan_code: str
    starts_on: date
    ends_on: date | None
    payment_method: str


class RatingRunOut(BaseModel):
    rated: int
    unpriced: int = Field(description="Answered calls no tariff prices (no plan, no prefix).")
    unpriced_cdr_ids: list[uuid.UUID] = Field(description="The first 100 of them.")


class UsageTotals(BaseModel):
    calls: int
    billed_s: int
    bundle_s: int
    out_s: int
    charged_s: int
    amount_cents: int  # HT


class LineUsage(UsageTotals):
    line_id: uuid.UUID


class UsageOut(BaseModel):
    customer_id: uuid.UUID
    period: date
    lines: list[LineUsage]
    total: UsageTotals


class InvoiceRunIn(StrictInput):
    month: Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")]


class InvoiceRunOut(BaseModel):
    issued: list[str] = Field(description="References of the invoices issued, in order.")
    not_issued: int = Field(description="Customers already invoiced, or with nothing due.")
    unpriced_customers: list[uuid.UUID]
    documents: int


class InvoiceLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    position: int
    kind: str
    label: str
    quantity: Decimal
    unit_cents: int
    amount_cents: int
    vat_rate: Decimal
    service_month: date | None


class InvoiceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    number: int
    reference: str
    customer_id: uuid.UUID
    buyer_name: str
    period: date
    issued_on: date
    due_on: date
    payment_method: str
    ht_cents: int
    vat_cents: int
    ttc_cents: int
    vat: list[dict]
    lines: list[InvoiceLineOut]


Text70 = Annotated[str, Field(min_length=1, max_length=70, pattern=r"^[^\x00]*$")]


class MandateIn(StrictInput):
    customer_id: uuid.UUID
    reference: Annotated[str, Field(min_length=1, max_length=35, description="The RUM")]
    debtor_name: Text70
    iban: Annotated[str, Field(min_length=15, max_length=42)]
    bic: Annotated[str, Field(min_length=8, max_length=11)]
    signed_on: date


class MandateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    customer_id: uuid.UUID
    reference: str
    debtor_name: str
    iban: str
    bic: str
    signed_on: date
    revoked_on: date | None


class CollectionIn(StrictInput):
    collection_date: date


class CollectionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    collection_date: date
    transactions: int
    total_cents: int


class CollectionRunOut(BaseModel):
    collection: CollectionOut | None = Field(description="None: nothing to collect.")


class PaymentIn(StrictInput):
    invoice_id: uuid.UUID
    kind: Literal["payment", "reject"] = "payment"
    method: Literal["sepa", "transfer", "cheque"]
    amount_cents: Annotated[int, Field(gt=0, le=2_000_000_000)]
    received_on: date
    bank_reference: Annotated[str | None, Field(max_length=100, pattern=r"^[^\x00]*$")] = None


class PaymentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    invoice_id: uuid.UUID
    customer_id: uuid.UUID
    kind: str
    method: str
    amount_cents: int
    received_on: date
    bank_reference: str | None


class BalanceOut(BaseModel):
    customer_id: uuid.UUID
    invoiced_ttc_cents: int
    paid_cents: int
    rejected_cents: int
    balance_cents: int = Field(description="What the customer owes (negative: a credit).")


class DisputeIn(StrictInput):
    received_on: date = Field(description="When the registered letter was received.")
    amount_ht_cents: Annotated[int, Field(gt=0, le=2_000_000_000)]
    vat_rate: Vat = Decimal(20)
    reason: Annotated[str, Field(min_length=1, max_length=2000, pattern=r"^[^\x00]*$")]


class ResolutionIn(StrictInput):
    outcome: Literal["upheld", "rejected"]
    resolved_on: date


class DisputeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    invoice_id: uuid.UUID
    customer_id: uuid.UUID
    received_on: date
    amount_ht_cents: int
    vat_rate: Decimal
    amount_ttc_cents: int
    reason: str
    status: str
    resolved_on: date | None
    credit_note_id: uuid.UUID | None


class ReferenceRateIn(StrictInput):
    kind: Literal["ecb_mro", "legal_professional"]
    effective_from: date
    rate: Annotated[Decimal, Field(ge=-10, le=100, max_digits=6, decimal_places=3)]


class ReferenceRateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    kind: str
    effective_from: date
    rate: Decimal
