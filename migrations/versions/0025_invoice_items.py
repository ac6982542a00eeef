"""invoice items: contract charges carried by an invoice line, equipment on invoice lines,
service-level credits and their uses (issue 17, the invoice side of issue 18)

Revision ID: 0025_invoice_items
Revises: 0024_voicemail
Create Date: 2026-12-03

Credits and their uses are append-only like the invoices (``centrex_append_only()``, 0012):
what is left of a credit is its amount less its uses, never an edited column.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025_invoice_items"
down_revision: str | Sequence[str] | None = "0024_voicemail"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = (
    "billing_service_credits",
    "billing_credit_uses",
    "billing_reratings",
    "billing_rerated_calls",
    "billing_catalogue_items",
)


def _at(name: str, default: str = "now()") -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text(default),
                     nullable=False)  # fmt: skip


def upgrade() -> None:
    # A line's kind names its source: contract charge kinds are up to 24 characters.
    op.alter_column("billing_invoice_lines", "kind", type_=sa.String(24),
                    existing_type=sa.String(16), existing_nullable=False)  # fmt: skip
    op.add_column(
        "contract_charges",
        sa.Column(
            "invoice_line_id", sa.Uuid(), sa.ForeignKey("billing_invoice_lines.id"), unique=True
        ),
    )
    op.add_column(
        "billing_invoice_lines",
        sa.Column("equipment_id", sa.Uuid(), sa.ForeignKey("equipment.id")),
    )
    op.create_table(
        "billing_service_credits",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("customer_id", sa.Uuid(), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("vat_rate", sa.Numeric(5, 2), nullable=False),
        sa.Column("granted_on", sa.Date(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("interruption_id", sa.Uuid()),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),  # fmt: skip
        sa.CheckConstraint("amount_cents > 0", name="ck_billing_credits_amount"),
    )
    op.create_index(
        "ix_billing_service_credits_customer_id", "billing_service_credits", ["customer_id"]
    )
    op.create_table(
        "billing_credit_uses",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "credit_id", sa.Uuid(), sa.ForeignKey("billing_service_credits.id"), nullable=False
        ),  # fmt: skip
        sa.Column("invoice_id", sa.Uuid(), sa.ForeignKey("billing_invoices.id"), nullable=False),
        sa.Column(
            "invoice_line_id",
            sa.Uuid(),
            sa.ForeignKey("billing_invoice_lines.id"),
            nullable=False,
            unique=True,
        ),  # fmt: skip
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),  # fmt: skip
        sa.CheckConstraint("amount_cents > 0", name="ck_billing_credit_uses_amount"),
    )
    op.create_index("ix_billing_credit_uses_credit_id", "billing_credit_uses", ["credit_id"])
    # Re-rating after a tariff correction (docs/billing.md, "Re-rating").
    op.add_column("billing_plans", sa.Column("correction_reason", sa.Text()))
    op.create_table(
        "billing_reratings",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("from_period", sa.Date(), nullable=False),
        sa.Column("to_period", sa.Date(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), sa.ForeignKey("customers.id")),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_on", sa.Date(), nullable=False),
        _at("created_at"),
    )
    op.create_table(
        "billing_rerated_calls",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "rerating_id",
            sa.Uuid(),
            sa.ForeignKey("billing_reratings.id"),
            nullable=False,
            index=True,
        ),  # fmt: skip
        sa.Column(
            "rated_call_id", sa.Uuid(), sa.ForeignKey("billing_rated_calls.id"), nullable=False
        ),  # fmt: skip
        sa.Column("cdr_id", sa.Uuid(), nullable=False, index=True),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("period", sa.Date(), nullable=False),
        sa.Column("plan_id", sa.Uuid(), sa.ForeignKey("billing_plans.id"), nullable=False),
        sa.Column("prefix", sa.String(15), nullable=False),
        sa.Column("bundle_s", sa.Integer(), nullable=False),
        sa.Column("charged_s", sa.Integer(), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("vat_rate", sa.Numeric(5, 2), nullable=False),
        sa.Column("previous_cents", sa.Integer(), nullable=False),
        sa.Column("previous_vat_rate", sa.Numeric(5, 2), nullable=False),
        _at("created_at", "clock_timestamp()"),
    )
    op.create_table(
        "billing_rerating_adjustments",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "rerating_id",
            sa.Uuid(),
            sa.ForeignKey("billing_reratings.id"),
            nullable=False,
            index=True,
        ),  # fmt: skip
        sa.Column(
            "customer_id", sa.Uuid(), sa.ForeignKey("customers.id"), nullable=False, index=True
        ),  # fmt: skip
        sa.Column("period", sa.Date(), nullable=False),
        sa.Column("vat_rate", sa.Numeric(5, 2), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), sa.ForeignKey("billing_invoices.id")),
        sa.Column(
            "invoice_line_id", sa.Uuid(), sa.ForeignKey("billing_invoice_lines.id"), unique=True
        ),  # fmt: skip
        _at("created_at"),
    )
    # Catalogue items other than plans and the customers' subscriptions to them.
    op.create_table(
        "billing_catalogue_items",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("billing", sa.String(8), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("entered_ttc", sa.Boolean(), nullable=False),
        sa.Column("fee_cents", sa.Integer(), nullable=False),
        sa.Column("vat_rate", sa.Numeric(5, 2), nullable=False),
        _at("created_at"),
        sa.UniqueConstraint("code", "version", name="uq_billing_items_code_version"),
        sa.UniqueConstraint("code", "effective_from", name="uq_billing_items_code_effective"),
        sa.CheckConstraint("billing IN ('monthly', 'one_off')", name="ck_billing_items_billing"),
        sa.CheckConstraint(
            "category IN ('alias_number', 'special_number', 'option', 'provision', 'other')",
            name="ck_billing_items_category",
        ),
        sa.CheckConstraint("fee_cents >= 0", name="ck_billing_items_fee"),
    )
    op.create_table(
        "billing_item_subscriptions",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("customer_id", sa.Uuid(), sa.ForeignKey("customers.id"), nullable=False,
                  index=True),  # fmt: skip
        sa.Column("item_code", sa.String(32), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(100)),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date()),
        _at("created_at"),
        sa.CheckConstraint("quantity > 0", name="ck_billing_item_subs_quantity"),
        sa.CheckConstraint("ends_on IS NULL OR ends_on >= starts_on", name="ck_billing_item_subs"),
    )
    op.add_column(
        "billing_invoice_lines",
        sa.Column("item_subscription_id", sa.Uuid(),
                  sa.ForeignKey("billing_item_subscriptions.id")),  # fmt: skip
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
    op.drop_column("billing_invoice_lines", "item_subscription_id")
    op.drop_table("billing_item_subscriptions")
    op.drop_table("billing_catalogue_items")
    for table in ("billing_rerating_adjustments", "billing_rerated_calls", "billing_reratings"):
        op.drop_table(table)
    op.drop_column("billing_plans", "correction_reason")
    op.drop_table("billing_credit_uses")
    op.drop_table("billing_service_credits")
    op.drop_column("billing_invoice_lines", "equipment_id")
    op.alter_column("billing_invoice_lines", "kind", type_=sa.String(16),
                    existing_type=sa.String(24), existing_nullable=False)  # fmt: skip
    op.drop_column("contract_charges", "invoice_line_id")
