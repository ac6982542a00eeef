"""API bodies of billing. Amounts are decimal euros as the operator types them (strings or
numbers, never kept as floats), at most 6 decimals."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from centrex.api.fields import Bool, IntRange
from centrex.api.schemas import StrictInput


def _decimal_text(value: object) -> object:
    """Exact amounts are written as text ("0.0250"): a JSON number is a float to most clients."""
    if isinstance(value, Decimal | str):
        return value
    raise PydanticCustomError("decimal_type", 'Input should be a decimal written as text: "0.0250"')


def _decimal(pattern: str, example: str, **constraints: object) -> object:
    return Annotated[
        Decimal,
        Field(**constraints),  # type: ignore[arg-type]
        BeforeValidator(_decimal_text),
        WithJsonSchema({"type": "string", "pattern": pattern, "examples": [example]}),
    ]


#: Euros, at most 6 decimals, below a million.
Euros = _decimal(r"^[0-9]{1,6}(\.[0-9]{1,6})?$", "0.0250", ge=0, max_digits=12, decimal_places=6)
#: A VAT rate in percent, 0 to 100, 2 decimals.
Vat = _decimal(r"^(100(\.0{1,2})?|[0-9]{1,2}(\.[0-9]{1,2})?)$", "20", ge=0, le=100,
               max_digits=5, decimal_places=2)  # fmt: skip


def _iso_date(value: object) -> object:
    """A day is ISO 8601 text ("2026-12-03"): pydantic would also read a number as a time."""
    if isinstance(value, date) or (isinstance(value, str) and re.fullmatch(DAY, value)):
        return value
    raise PydanticCustomError("date_type", 'Input should be a date as text: "2026-12-03"')


DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
Day = Annotated[
    date, BeforeValidator(_iso_date), WithJsonSchema({"type": "string", "format": "date"})
]
Code = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
Seconds = IntRange(0, 3600)
Increment = IntRange(1, 3600)


class TariffLineIn(StrictInput):
    prefix: Annotated[str, Field(pattern=r"^[1-9][0-9]{0,14}$", description="E.164 digits, no +")]
    per_minute: Euros
    connection_fee: Euros = Decimal(0)
    min_s: Seconds = 0
    first_increment_s: Increment = 60
    increment_s: Increment = 60
    in_bundle: Bool = False
    vat_rate: Vat = Decimal(20)


class PlanIn(StrictInput):
    code: Code
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]
    effective_from: Day
    prices_include_vat: Bool = Field(
        description="True: the amounts are TTC, as the contract states them; HT is derived."
    )
    line_fee: Euros
    line_fee_vat: Vat = Decimal(20)
    access_fee: Euros = Decimal(0)
    access_fee_vat: Vat = Decimal(20)
    bundle_s: IntRange(0, 100_000_000, "Seconds a line, a month") = 0  # type: ignore[valid-type]
    bundle_pooled: Bool = False
    interim_threshold: Euros | None = Field(
        None, description="Out-of-bundle usage of a month past which an interim invoice is "
        "issued (art. 11.2); none: never.",
    )  # fmt: skip
    tariff: Annotated[list[TariffLineIn], Field(min_length=1, max_length=5000)]
    correction_reason: (
        Annotated[str, Field(min_length=1, max_length=2000, pattern=r"^[^\x00]*$")] | None
    ) = Field(
        None, description="A tariff correction: the version may start in the past (after the "
        "current one's start); its calls are rated again only by an explicit re-rating.",
    )  # fmt: skip


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
    interim_threshold_cents: int | None
    correction_reason: str | None = None
    created_at: datetime
    tariff_lines: list[TariffLineOut]


class SubscriptionIn(StrictInput):
    customer_id: uuid.UUID
    plan_code: Code
    starts_on: Day
    ends_on: Day | None = None
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


MONTH = r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])$"


class InvoiceRunIn(StrictInput):
    month: Annotated[str, Field(pattern=MONTH, description="YYYY-MM")]


class InvoiceRunOut(BaseModel):
    issued: list[str] = Field(description="References of the invoices issued, in order.")
    not_issued: int = Field(description="Customers already invoiced, or with nothing due.")
    unpriced_customers: list[uuid.UUID]
    documents: int
    emailed: int = Field(description="Invoices emailed by this run (to customers with an email).")


class InterimRunOut(BaseModel):
    issued: list[str] = Field(description="References of the interim invoices issued.")


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
    signed_on: Day


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
    collection_date: Day


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
    amount_cents: IntRange(1, 2_000_000_000)  # type: ignore[valid-type]
    received_on: Day
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
    received_on: Day = Field(description="When the registered letter was received.")
    amount_ht_cents: IntRange(1, 2_000_000_000)  # type: ignore[valid-type]
    vat_rate: Vat = Decimal(20)
    reason: Annotated[str, Field(min_length=1, max_length=2000, pattern=r"^[^\x00]*$")]


class ResolutionIn(StrictInput):
    outcome: Literal["upheld", "rejected"]
    resolved_on: Day


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
    effective_from: Day
    rate: _decimal(r"^-?[0-9]{1,2}(\.[0-9]{1,3})?$", "4.15", max_digits=5, decimal_places=3)  # type: ignore[valid-type]


class ReferenceRateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    kind: str
    effective_from: date
    rate: Decimal


class ServiceCreditIn(StrictInput):
    customer_id: uuid.UUID
    amount_ht_cents: IntRange(1, 2_000_000_000)  # type: ignore[valid-type]
    vat_rate: Vat = Decimal(20)
    granted_on: Day | None = Field(default=None, description="Default: today (Paris).")
    reason: Annotated[str, Field(min_length=1, max_length=2000, pattern=r"^[^\x00]*$")]
    interruption_id: uuid.UUID | None = Field(
        default=None, description="The recorded interruption it compensates, if any."
    )


class CreditUseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    invoice_id: uuid.UUID
    invoice_line_id: uuid.UUID
    amount_cents: int


class ServiceCreditOut(BaseModel):
    id: uuid.UUID
    customer_id: uuid.UUID
    amount_ht_cents: int
    vat_rate: Decimal
    granted_on: date
    reason: str
    interruption_id: uuid.UUID | None
    left_cents: int
    uses: list[CreditUseOut]


class ReratingIn(StrictInput):
    from_month: Annotated[str, Field(pattern=MONTH, description="YYYY-MM, the first month.")]
    to_month: (
        Annotated[str, Field(pattern=MONTH, description="YYYY-MM; default: from_month.")] | None
    ) = None
    customer_id: uuid.UUID | None = Field(None, description="Default: every customer.")
    reason: Annotated[str, Field(min_length=1, max_length=2000, pattern=r"^[^\x00]*$")]


class AdjustmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    customer_id: uuid.UUID
    period: date
    vat_rate: Decimal
    calls: int
    amount_cents: int
    invoice_id: uuid.UUID | None
    invoice_line_id: uuid.UUID | None


class ReratedCallOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    cdr_id: uuid.UUID
    rated_call_id: uuid.UUID
    prefix: str
    previous_cents: int
    amount_cents: int
    vat_rate: Decimal


class ReratingOut(BaseModel):
    id: uuid.UUID
    from_period: date
    to_period: date
    customer_id: uuid.UUID | None
    reason: str
    requested_on: date
    calls: list[ReratedCallOut]
    adjustments: list[AdjustmentOut]
    credit_notes: list[str] = Field(description="References of the credit notes it issued.")


class CatalogueItemIn(StrictInput):
    code: Code
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]
    category: Literal["alias_number", "special_number", "option", "provision", "other"]
    billing: Literal["monthly", "one_off"]
    effective_from: Day
    prices_include_vat: Bool = Field(description="True: the fee is TTC; HT is derived.")
    fee: Euros
    vat_rate: Vat = Decimal(20)


class CatalogueItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    code: str
    version: int
    name: str
    category: str
    billing: str
    effective_from: date
    entered_ttc: bool
    fee_cents: int
    vat_rate: Decimal


class ItemSubscriptionIn(StrictInput):
    customer_id: uuid.UUID
    item_code: Code
    quantity: IntRange(1, 100_000) = 1  # type: ignore[valid-type]
    reference: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00]*$")] | None = (
        Field(None, description="What it is for: a number, a message's name.")
    )
    starts_on: Day
    ends_on: Day | None = None


class ItemSubscriptionEndIn(StrictInput):
    ends_on: Day = Field(description="Its last day.")


class ItemSubscriptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    customer_id: uuid.UUID
    item_code: str
    quantity: int
    reference: str | None
    starts_on: date
    ends_on: date | None
