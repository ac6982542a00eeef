"""billing: versioned plans and tariff lines, subscriptions, rated calls (issue 17)

Revision ID: 0020_billing
Revises: 0019_portability
Create Date: 2026-12-03

Plans, tariff lines and rated calls are append-only: ``centrex_append_only()`` (0012) refuses
UPDATE and DELETE, so a price is never edited in place and a call is rated once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0020_billing"
down_revision: str | Sequence[str] | None = "0019_portability"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = (
    "billing_plans",
    "billing_tariff_lines",
    "billing_rated_calls",
    "billing_invoices",
    "billing_invoice_lines",
    "billing_invoice_documents",
    "billing_collections",
    "billing_collection_items",
    "billing_payments",
    "billing_reference_rates",
    "billing_invoice_emails",
)
VAT = sa.Numeric(5, 2)
RATE = sa.Numeric(14, 6)


def _at(name: str, default: str = "now()") -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text(default),
                     nullable=False)  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "billing_plans",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("entered_ttc", sa.Boolean(), nullable=False),
        sa.Column("line_fee_cents", sa.Integer(), nullable=False),
        sa.Column("line_fee_vat", VAT, nullable=False),
        sa.Column("access_fee_cents", sa.Integer(), nullable=False),
        sa.Column("access_fee_vat", VAT, nullable=False),
        sa.Column("bundle_s", sa.Integer(), nullable=False),
        sa.Column("bundle_pooled", sa.Boolean(), nullable=False),
        sa.Column("interim_threshold_cents", sa.Integer()),
        _at("created_at"),
        sa.UniqueConstraint("code", "version", name="uq_billing_plans_code_version"),
        sa.UniqueConstraint("code", "effective_from", name="uq_billing_plans_code_effective"),
        sa.CheckConstraint("bundle_s >= 0", name="ck_billing_plans_bundle"),
    )
    op.create_table(
        "billing_tariff_lines",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("plan_id", sa.Uuid(), sa.ForeignKey("billing_plans.id"), nullable=False),
        sa.Column("prefix", sa.String(15), nullable=False),
        sa.Column("per_minute", RATE, nullable=False),
        sa.Column("connection_fee", RATE, nullable=False),
        sa.Column("min_s", sa.Integer(), nullable=False),
        sa.Column("first_increment_s", sa.Integer(), nullable=False),
        sa.Column("increment_s", sa.Integer(), nullable=False),
        sa.Column("in_bundle", sa.Boolean(), nullable=False),
        sa.Column("vat_rate", VAT, nullable=False),
        sa.UniqueConstraint("plan_id", "prefix", name="uq_billing_tariff_prefix"),
    )
    op.create_index("ix_billing_tariff_lines_plan_id", "billing_tariff_lines", ["plan_id"])
    op.create_table(
        "billing_subscriptions",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("customer_id", sa.Uuid(), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("plan_code", sa.String(32), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date()),
        sa.Column("payment_method", sa.String(16), nullable=False),
        _at("created_at"),
        sa.CheckConstraint("ends_on IS NULL OR ends_on >= starts_on", name="ck_billing_subs_dates"),
        sa.CheckConstraint(
            "payment_method IN ('sepa', 'transfer', 'cheque')", name="ck_billing_subs_payment"
        ),
    )
    op.create_index(
        "ix_billing_subscriptions_customer_id", "billing_subscriptions", ["customer_id"]
    )
    op.create_table(
        "billing_rated_calls",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("cdr_id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("line_id", sa.Uuid(), nullable=False),
        sa.Column("period", sa.Date(), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("callee", sa.String(64), nullable=False),
        sa.Column("plan_id", sa.Uuid(), sa.ForeignKey("billing_plans.id"), nullable=False),
        sa.Column("prefix", sa.String(15), nullable=False),
        sa.Column("billed_s", sa.Integer(), nullable=False),
        sa.Column("bundle_s", sa.Integer(), nullable=False),
        sa.Column("out_s", sa.Integer(), nullable=False),
        sa.Column("charged_s", sa.Integer(), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("vat_rate", VAT, nullable=False),
        sa.Column("fraud", sa.String(20)),
        _at("rated_at", "clock_timestamp()"),
    )
    op.create_index(
        "ix_billing_rated_customer_period", "billing_rated_calls", ["customer_id", "period"]
    )
    op.create_index("ix_billing_rated_calls_line_id", "billing_rated_calls", ["line_id"])
    op.create_table(
        "billing_invoice_counters",
        sa.Column("series", sa.String(16), primary_key=True),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.Column("last_issued_on", sa.Date()),
    )
    op.execute("INSERT INTO billing_invoice_counters VALUES ('invoice', 0, NULL)")
    op.create_table(
        "billing_invoices",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("number", sa.Integer(), nullable=False, unique=True),
        sa.Column("reference", sa.String(32), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("credits_invoice_id", sa.Uuid(), sa.ForeignKey("billing_invoices.id")),
        sa.Column("customer_id", sa.Uuid(), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("buyer_name", sa.String(200), nullable=False),
        sa.Column("period", sa.Date(), nullable=False),
        sa.Column("issued_on", sa.Date(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("payment_method", sa.String(16), nullable=False),
        sa.Column("ht_cents", sa.Integer(), nullable=False),
        sa.Column("vat_cents", sa.Integer(), nullable=False),
        sa.Column("ttc_cents", sa.Integer(), nullable=False),
        sa.Column("vat", postgresql.JSONB(), nullable=False),
        _at("created_at"),
    )
    op.create_index(
        "uq_billing_invoice_period", "billing_invoices", ["customer_id", "period"], unique=True,
        postgresql_where=sa.text("kind = 'invoice'"),
    )  # fmt: skip
    op.create_index(
        "ix_billing_invoices_customer", "billing_invoices", ["customer_id", "issued_on"]
    )
    op.create_table(
        "billing_invoice_lines",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("invoice_id", sa.Uuid(), sa.ForeignKey("billing_invoices.id"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("label", sa.String(300), nullable=False),
        sa.Column("quantity", sa.Numeric(14, 4), nullable=False),
        sa.Column("unit_cents", sa.Integer(), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("vat_rate", VAT, nullable=False),
        sa.Column("service_month", sa.Date()),
        sa.Column("prefix", sa.String(15)),
        sa.Column("refers_to_invoice_id", sa.Uuid(), sa.ForeignKey("billing_invoices.id")),
        sa.Column("interest_until", sa.Date()),
        sa.UniqueConstraint("invoice_id", "position", name="uq_billing_invoice_line"),
    )
    op.create_table(
        "billing_invoice_documents",
        sa.Column("invoice_id", sa.Uuid(), sa.ForeignKey("billing_invoices.id"), primary_key=True),
        sa.Column("pdf", sa.LargeBinary(), nullable=False),
        sa.Column("facturx_xml", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        _at("created_at"),
    )
    op.create_table(
        "billing_mandates",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("customer_id", sa.Uuid(), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("reference", sa.String(35), nullable=False, unique=True),
        sa.Column("debtor_name", sa.String(70), nullable=False),
        sa.Column("iban", sa.String(34), nullable=False),
        sa.Column("bic", sa.String(11), nullable=False),
        sa.Column("signed_on", sa.Date(), nullable=False),
        sa.Column("revoked_on", sa.Date()),
        _at("created_at"),
    )
    op.create_index("ix_billing_mandates_customer_id", "billing_mandates", ["customer_id"])
    op.create_table(
        "billing_collections",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("collection_date", sa.Date(), nullable=False),
        sa.Column("transactions", sa.Integer(), nullable=False),
        sa.Column("total_cents", sa.Integer(), nullable=False),
        sa.Column("xml", sa.Text(), nullable=False),
        _at("created_at"),
    )
    op.create_table(
        "billing_collection_items",
        sa.Column("collection_id", sa.Uuid(), sa.ForeignKey("billing_collections.id"),
                  primary_key=True),
        sa.Column("invoice_id", sa.Uuid(), sa.ForeignKey("billing_invoices.id"),
                  primary_key=True, unique=True),
        sa.Column("mandate_id", sa.Uuid(), sa.ForeignKey("billing_mandates.id"), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("sequence_type", sa.String(4), nullable=False),
    )  # fmt: skip
    op.create_index(
        "ix_billing_collection_items_mandate_id", "billing_collection_items", ["mandate_id"]
    )
    op.create_table(
        "billing_payments",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("invoice_id", sa.Uuid(), sa.ForeignKey("billing_invoices.id"), nullable=False),
        sa.Column("customer_id", sa.Uuid(), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.Column("bank_reference", sa.String(100)),
        _at("created_at"),
        sa.CheckConstraint("amount_cents > 0", name="ck_billing_payments_amount"),
        sa.CheckConstraint("kind IN ('payment', 'reject')", name="ck_billing_payments_kind"),
    )
    op.create_index("ix_billing_payments_invoice_id", "billing_payments", ["invoice_id"])
    op.create_index("ix_billing_payments_customer_id", "billing_payments", ["customer_id"])
    op.create_table(
        "billing_disputes",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("invoice_id", sa.Uuid(), sa.ForeignKey("billing_invoices.id"), nullable=False),
        sa.Column("customer_id", sa.Uuid(), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.Column("amount_ht_cents", sa.Integer(), nullable=False),
        sa.Column("vat_rate", VAT, nullable=False),
        sa.Column("amount_ttc_cents", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("resolved_on", sa.Date()),
        sa.Column("credit_note_id", sa.Uuid(), sa.ForeignKey("billing_invoices.id")),
        _at("created_at"),
        sa.CheckConstraint("status IN ('pending', 'upheld', 'rejected')", name="ck_billing_disp"),
        sa.CheckConstraint("amount_ht_cents > 0", name="ck_billing_disputes_amount"),
    )
    op.create_index("ix_billing_disputes_invoice_id", "billing_disputes", ["invoice_id"])
    op.create_table(
        "billing_reference_rates",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("rate", sa.Numeric(6, 3), nullable=False),
        _at("created_at"),
        sa.UniqueConstraint("kind", "effective_from", name="uq_billing_reference_rates"),
        sa.CheckConstraint("kind IN ('ecb_mro', 'legal_professional')", name="ck_billing_rate"),
    )
    op.create_table(
        "billing_invoice_emails",
        sa.Column("invoice_id", sa.Uuid(), sa.ForeignKey("billing_invoices.id"), primary_key=True),
        sa.Column("recipient", sa.String(254), nullable=False),
        _at("sent_at"),
    )
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION centrex_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION centrex_append_only()"
        )


def downgrade() -> None:
    for table in ("billing_invoice_emails", "billing_reference_rates", "billing_disputes", "billing_payments", "billing_collection_items", "billing_collections",
                  "billing_mandates", "billing_invoice_documents", "billing_invoice_lines", "billing_invoices",
                  "billing_invoice_counters", "billing_rated_calls", "billing_subscriptions",
                  "billing_tariff_lines", "billing_plans"):  # fmt: skip
        op.drop_table(table)
