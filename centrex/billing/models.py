"""Billing's tables. Plans and their tariff lines are versions: never edited in place (a
trigger refuses UPDATE and DELETE, migration 0023); a correction is a new version from a date.
Rated calls are written once per CDR (unique ``cdr_id``) and never changed either."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from centrex.audit.recorder import AUDITED, Audited
from centrex.db.models import Base

VAT = Numeric(5, 2)  # percent: 20.00
RATE = Numeric(14, 6)  # euros HT, finer than the cent (a price per minute)


class Plan(Base):
    """One version of a plan, in force from ``effective_from`` (a Paris calendar day) until the
    next version of the same code. Amounts HT in cents; ``entered_ttc`` says the operator typed
    them TTC, as the contract states them (the HT was derived, docs/billing.md)."""

    __tablename__ = "billing_plans"
    __table_args__ = (
        UniqueConstraint("code", "version", name="uq_billing_plans_code_version"),
        UniqueConstraint("code", "effective_from", name="uq_billing_plans_code_effective"),
        CheckConstraint("bundle_s >= 0", name="ck_billing_plans_bundle"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    code: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    effective_from: Mapped[date] = mapped_column(Date)
    entered_ttc: Mapped[bool] = mapped_column(Boolean)
    line_fee_cents: Mapped[int] = mapped_column(Integer)  # monthly, per line, HT
    line_fee_vat: Mapped[Decimal] = mapped_column(VAT)
    access_fee_cents: Mapped[int] = mapped_column(Integer)  # FAS, one-off, HT
    access_fee_vat: Mapped[Decimal] = mapped_column(VAT)
    bundle_s: Mapped[int] = mapped_column(Integer)  # per line and month
    bundle_pooled: Mapped[bool] = mapped_column(Boolean)  # shared by the customer's lines
    # Art. 11.2: out-of-bundle usage HT of the month past this: an interim invoice (None: never).
    interim_threshold_cents: Mapped[int | None] = mapped_column(Integer)
    # A tariff correction (docs/billing.md, "Re-rating"): why it may start in the past.
    correction_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    tariff_lines: Mapped[list[TariffLineRow]] = relationship(
        order_by="TariffLineRow.prefix", lazy="selectin"
    )


class TariffLineRow(Base):
    __tablename__ = "billing_tariff_lines"
    __table_args__ = (UniqueConstraint("plan_id", "prefix", name="uq_billing_tariff_prefix"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_plans.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(15))
    per_minute: Mapped[Decimal] = mapped_column(RATE)  # HT
    connection_fee: Mapped[Decimal] = mapped_column(RATE)  # HT
    min_s: Mapped[int] = mapped_column(Integer)
    first_increment_s: Mapped[int] = mapped_column(Integer)
    increment_s: Mapped[int] = mapped_column(Integer)
    in_bundle: Mapped[bool] = mapped_column(Boolean)
    vat_rate: Mapped[Decimal] = mapped_column(VAT)


class Subscription(Base):
    """A customer on a plan (by code: the version in force on each day applies) from a day,
    until a day if it ended."""

    __tablename__ = "billing_subscriptions"
    __table_args__ = (
        CheckConstraint("ends_on IS NULL OR ends_on >= starts_on", name="ck_billing_subs_dates"),
        CheckConstraint(
            "payment_method IN ('sepa', 'transfer', 'cheque')", name="ck_billing_subs_payment"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    plan_code: Mapped[str] = mapped_column(String(32))
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)
    payment_method: Mapped[str] = mapped_column(String(16), default="sepa")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RatedCall(Base):
    """One CDR, rated: against which plan version and tariff line, what the bundle covered,
    what is charged. No foreign key to the CDR: the rating is kept as long as the invoice."""

    __tablename__ = "billing_rated_calls"
    __table_args__ = (Index("ix_billing_rated_customer_period", "customer_id", "period"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    cdr_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    customer_id: Mapped[uuid.UUID] = mapped_column()
    line_id: Mapped[uuid.UUID] = mapped_column(index=True)
    period: Mapped[date] = mapped_column(Date)  # first day of the billing month
    start_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    callee: Mapped[str] = mapped_column(String(64))
    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_plans.id"))
    prefix: Mapped[str] = mapped_column(String(15))
    billed_s: Mapped[int] = mapped_column(Integer)
    bundle_s: Mapped[int] = mapped_column(Integer)
    out_s: Mapped[int] = mapped_column(Integer)
    charged_s: Mapped[int] = mapped_column(Integer)
    amount_cents: Mapped[int] = mapped_column(Integer)  # HT
    vat_rate: Mapped[Decimal] = mapped_column(VAT)
    fraud: Mapped[str | None] = mapped_column(String(20))
    rated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp()
    )


# The audit trail's declaration of each model (centrex/audit/recorder.py): none holds a secret.
AUDITED[Plan] = Audited("billing_plan")
AUDITED[TariffLineRow] = Audited("billing_tariff_line")
AUDITED[Subscription] = Audited("billing_subscription")
AUDITED[RatedCall] = Audited("billing_rated_call")


class InvoiceCounter(Base):
    """The one numbering sequence of invoices (French law: continuous, chronological, no gap).
    Locked FOR UPDATE by the transaction that issues a number, so a number is taken only by an
    invoice that commits with it."""

    __tablename__ = "billing_invoice_counters"

    series: Mapped[str] = mapped_column(String(16), primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer)
    last_issued_on: Mapped[date | None] = mapped_column(Date)


class Invoice(Base):
    """An issued invoice: never changed (a trigger refuses it, migration 0023); a correction is
    a credit note. Amounts HT/VAT/TTC in cents; ``vat`` holds each rate's base and VAT."""

    __tablename__ = "billing_invoices"
    __table_args__ = (
        # One invoice per customer and month; credit notes as many as disputes upheld.
        Index(
            "uq_billing_invoice_period",
            "customer_id",
            "period",
            unique=True,
            postgresql_where=text("kind = 'invoice'"),
        ),
        Index("ix_billing_invoices_customer", "customer_id", "issued_on"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    reference: Mapped[str] = mapped_column(String(32), unique=True)
    # invoice | interim | credit_note (amounts positive)
    kind: Mapped[str] = mapped_column(String(16))
    # A credit note: the invoice it credits (Factur-X BT-25).
    credits_invoice_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("billing_invoices.id"))
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    buyer_name: Mapped[str] = mapped_column(String(200))
    period: Mapped[date] = mapped_column(Date)  # the usage month (fees: the month after)
    issued_on: Mapped[date] = mapped_column(Date)
    due_on: Mapped[date] = mapped_column(Date)
    payment_method: Mapped[str] = mapped_column(String(16))
    ht_cents: Mapped[int] = mapped_column(Integer)
    vat_cents: Mapped[int] = mapped_column(Integer)
    ttc_cents: Mapped[int] = mapped_column(Integer)
    vat: Mapped[list] = mapped_column(JSONB)  # [{"rate": "20.00", "base": c, "vat": c}]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    lines: Mapped[list[InvoiceLineRow]] = relationship(
        order_by="InvoiceLineRow.position",
        lazy="selectin",
        foreign_keys="[InvoiceLineRow.invoice_id]",
    )


class InvoiceLineRow(Base):
    __tablename__ = "billing_invoice_lines"
    __table_args__ = (UniqueConstraint("invoice_id", "position", name="uq_billing_invoice_line"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_invoices.id"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(24))
    label: Mapped[str] = mapped_column(String(300))
    quantity: Mapped[Decimal] = mapped_column(Numeric(14, 4))
    unit_cents: Mapped[int] = mapped_column(Integer)
    amount_cents: Mapped[int] = mapped_column(Integer)
    vat_rate: Mapped[Decimal] = mapped_column(VAT)
    service_month: Mapped[date | None] = mapped_column(Date)
    prefix: Mapped[str | None] = mapped_column(String(15))  # a usage line: its tariff prefix
    # A late-payment charge: the earlier invoice it is about, and the last day of interest.
    refers_to_invoice_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("billing_invoices.id")
    )
    interest_until: Mapped[date | None] = mapped_column(Date)
    # A device's provision or rent (docs/billing.md, "Equipment").
    equipment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("equipment.id"))
    # A catalogue item's fee (docs/billing.md, "Catalogue items").
    item_subscription_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("billing_item_subscriptions.id")
    )


class InvoiceDocument(Base):
    """The invoice as sent: the PDF with its Factur-X XML embedded, kept 5 years (art. 11.2);
    append-only like the invoice."""

    __tablename__ = "billing_invoice_documents"

    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("billing_invoices.id"), primary_key=True
    )
    pdf: Mapped[bytes] = mapped_column(LargeBinary)
    facturx_xml: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


AUDITED[InvoiceCounter] = Audited("billing_invoice_counter")
AUDITED[Invoice] = Audited("billing_invoice")
AUDITED[InvoiceLineRow] = Audited("billing_invoice_line")
AUDITED[InvoiceDocument] = Audited("billing_invoice_document")


class Mandate(Base):
    """A SEPA direct debit mandate: the customer's account and its signature. Never edited: a
    new account is a new mandate, the old one revoked."""

    __tablename__ = "billing_mandates"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    reference: Mapped[str] = mapped_column(String(35), unique=True)  # RUM
    debtor_name: Mapped[str] = mapped_column(String(70))
    iban: Mapped[str] = mapped_column(String(34))
    bic: Mapped[str] = mapped_column(String(11))
    signed_on: Mapped[date] = mapped_column(Date)
    revoked_on: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Collection(Base):
    """One pain.008 file for the operator's bank: the invoices it debits, kept as sent."""

    __tablename__ = "billing_collections"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    collection_date: Mapped[date] = mapped_column(Date)
    transactions: Mapped[int] = mapped_column(Integer)
    total_cents: Mapped[int] = mapped_column(Integer)
    xml: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CollectionItem(Base):
    __tablename__ = "billing_collection_items"

    collection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("billing_collections.id"), primary_key=True
    )
    # One collection per invoice, ever: a reject is recorded as such, not collected again here.
    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("billing_invoices.id"), primary_key=True, unique=True
    )
    mandate_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_mandates.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    sequence_type: Mapped[str] = mapped_column(String(4))


class Payment(Base):
    """Money received for an invoice, or a bank's reject of an earlier one (``kind``)."""

    __tablename__ = "billing_payments"
    __table_args__ = (
        CheckConstraint("amount_cents > 0", name="ck_billing_payments_amount"),
        CheckConstraint("kind IN ('payment', 'reject')", name="ck_billing_payments_kind"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_invoices.id"), index=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    method: Mapped[str] = mapped_column(String(16))  # sepa | transfer | cheque
    amount_cents: Mapped[int] = mapped_column(Integer)
    received_on: Mapped[date] = mapped_column(Date)
    bank_reference: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


AUDITED[Mandate] = Audited("billing_mandate")
AUDITED[Collection] = Audited("billing_collection")
AUDITED[CollectionItem] = Audited("billing_collection_item")
AUDITED[Payment] = Audited("billing_payment")


class Dispute(Base):
    """A customer's dispute of part of an invoice (art. 11.3), received by registered letter
    within 30 days; resolved upheld (a credit note) or rejected. Its TTC part is suspended
    while pending."""

    __tablename__ = "billing_disputes"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'upheld', 'rejected')", name="ck_billing_disp"),
        CheckConstraint("amount_ht_cents > 0", name="ck_billing_disputes_amount"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_invoices.id"), index=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    received_on: Mapped[date] = mapped_column(Date)
    amount_ht_cents: Mapped[int] = mapped_column(Integer)
    vat_rate: Mapped[Decimal] = mapped_column(VAT)
    amount_ttc_cents: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8), default="pending")
    resolved_on: Mapped[date | None] = mapped_column(Date)
    credit_note_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("billing_invoices.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


AUDITED[Dispute] = Audited("billing_dispute")


class ReferenceRate(Base):
    """A dated reference rate for late-payment interest: the ECB main refinancing rate
    (``ecb_mro``) or the French legal interest rate for professional creditors
    (``legal_professional``, published per half-year). Append-only."""

    __tablename__ = "billing_reference_rates"
    __table_args__ = (
        UniqueConstraint("kind", "effective_from", name="uq_billing_reference_rates"),
        CheckConstraint("kind IN ('ecb_mro', 'legal_professional')", name="ck_billing_rate"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(20))
    effective_from: Mapped[date] = mapped_column(Date)
    rate: Mapped[Decimal] = mapped_column(Numeric(6, 3))  # percent a year
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


AUDITED[ReferenceRate] = Audited("billing_reference_rate")


class InvoiceEmail(Base):
    """An invoice (or credit note) emailed: to whom, when. Append-only."""

    __tablename__ = "billing_invoice_emails"

    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("billing_invoices.id"), primary_key=True
    )
    recipient: Mapped[str] = mapped_column(String(254))
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


AUDITED[InvoiceEmail] = Audited("billing_invoice_email")


class ServiceCredit(Base):
    """A service-level credit the operator owes the customer (art. 11.2, 18.1), HT at its VAT
    rate: deducted from the customer's next invoices until used up (``CreditUse``).
    Append-only."""

    __tablename__ = "billing_service_credits"
    __table_args__ = (CheckConstraint("amount_cents > 0", name="ck_billing_credits_amount"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    vat_rate: Mapped[Decimal] = mapped_column(VAT)
    granted_on: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(Text)
    # The recorded interruption it compensates, if any (no foreign key: interruptions are
    # recorded by the contracts domain, docs/contracts.md).
    interruption_id: Mapped[uuid.UUID | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CreditUse(Base):
    """The part of a credit one invoice deducted, on which of its lines. Append-only."""

    __tablename__ = "billing_credit_uses"
    __table_args__ = (CheckConstraint("amount_cents > 0", name="ck_billing_credit_uses_amount"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    credit_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_service_credits.id"),
                                                 index=True)  # fmt: skip
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_invoices.id"))
    invoice_line_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("billing_invoice_lines.id"), unique=True
    )
    amount_cents: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


AUDITED[ServiceCredit] = Audited("billing_service_credit")
AUDITED[CreditUse] = Audited("billing_credit_use")


class Rerating(Base):
    """An operator's request to rate a period's calls again after a tariff correction: which
    months, which customer (None: all), why. Append-only."""

    __tablename__ = "billing_reratings"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    from_period: Mapped[date] = mapped_column(Date)
    to_period: Mapped[date] = mapped_column(Date)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id"))
    reason: Mapped[str] = mapped_column(Text)
    requested_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ReratedCall(Base):
    """A call whose rating a re-rating changed: what it was (the rated call, or the last
    re-rating of it) and what it is now. The rated call itself is never edited. Append-only."""

    __tablename__ = "billing_rerated_calls"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    rerating_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_reratings.id"), index=True)
    rated_call_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_rated_calls.id"))
    cdr_id: Mapped[uuid.UUID] = mapped_column(index=True)
    customer_id: Mapped[uuid.UUID] = mapped_column()
    period: Mapped[date] = mapped_column(Date)
    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_plans.id"))
    prefix: Mapped[str] = mapped_column(String(15))
    bundle_s: Mapped[int] = mapped_column(Integer)
    charged_s: Mapped[int] = mapped_column(Integer)
    amount_cents: Mapped[int] = mapped_column(Integer)  # HT, now
    vat_rate: Mapped[Decimal] = mapped_column(VAT)
    previous_cents: Mapped[int] = mapped_column(Integer)
    previous_vat_rate: Mapped[Decimal] = mapped_column(VAT)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp()
    )


class RerateAdjustment(Base):
    """What a re-rating changed for one customer, month and VAT rate (HT): carried once by an
    invoice line (a difference to pay) or a credit note's line (a difference to refund)."""

    __tablename__ = "billing_rerating_adjustments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    rerating_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_reratings.id"), index=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    period: Mapped[date] = mapped_column(Date)
    vat_rate: Mapped[Decimal] = mapped_column(VAT)
    calls: Mapped[int] = mapped_column(Integer)
    amount_cents: Mapped[int] = mapped_column(Integer)
    invoice_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("billing_invoices.id"))
    invoice_line_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("billing_invoice_lines.id"), unique=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


AUDITED[Rerating] = Audited("billing_rerating")
AUDITED[ReratedCall] = Audited("billing_rerated_call")
AUDITED[RerateAdjustment] = Audited("billing_rerating_adjustment")


class CatalogueItem(Base):
    """One version of a catalogue item other than a plan (art. 11, issue 17): an alias or
    special number's monthly fee, an optional service (a studio-recorded message), a one-off
    provision. In force from ``effective_from`` until the next version of its code; never
    edited (append-only). Amounts HT; ``entered_ttc`` as for plans."""

    __tablename__ = "billing_catalogue_items"
    __table_args__ = (
        UniqueConstraint("code", "version", name="uq_billing_items_code_version"),
        UniqueConstraint("code", "effective_from", name="uq_billing_items_code_effective"),
        CheckConstraint("billing IN ('monthly', 'one_off')", name="ck_billing_items_billing"),
        CheckConstraint(
            "category IN ('alias_number', 'special_number', 'option', 'provision', 'other')",
            name="ck_billing_items_category",
        ),
        CheckConstraint("fee_cents >= 0", name="ck_billing_items_fee"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    code: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(16))
    billing: Mapped[str] = mapped_column(String(8))
    effective_from: Mapped[date] = mapped_column(Date)
    entered_ttc: Mapped[bool] = mapped_column(Boolean)
    fee_cents: Mapped[int] = mapped_column(Integer)
    vat_rate: Mapped[Decimal] = mapped_column(VAT)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ItemSubscription(Base):
    """A customer's subscription to a catalogue item (by code: the version in force applies),
    so many of it, from a day until a day; ``reference`` says what for (a number...)."""

    __tablename__ = "billing_item_subscriptions"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="ck_billing_item_subs_quantity"),
        CheckConstraint("ends_on IS NULL OR ends_on >= starts_on", name="ck_billing_item_subs"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    item_code: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[int] = mapped_column(Integer)
    reference: Mapped[str | None] = mapped_column(String(100))
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


AUDITED[CatalogueItem] = Audited("billing_catalogue_item")
AUDITED[ItemSubscription] = Audited("billing_item_subscription")
