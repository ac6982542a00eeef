"""billing: the bank's return files (pain.002, camt.054) imported and their entries (issue 17)

Revision ID: 0028_bank_files
Revises: 0027_features_rest
Create Date: 2026-12-03

Append-only like the payments they make (``centrex_append_only()``, 0012).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028_bank_files"
down_revision: str | Sequence[str] | None = "0027_features_rest"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("billing_bank_files", "billing_bank_entries")


def upgrade() -> None:
    op.create_table(
        "billing_bank_files",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("message_id", sa.String(35), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("xml", sa.Text(), nullable=False),
        sa.Column(
            "imported_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),  # fmt: skip
        sa.UniqueConstraint("kind", "message_id", name="uq_billing_bank_files_message"),
    )
    op.create_table(
        "billing_bank_entries",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "file_id", sa.Uuid(), sa.ForeignKey("billing_bank_files.id"), nullable=False, index=True
        ),  # fmt: skip
        sa.Column("invoice_id", sa.Uuid(), sa.ForeignKey("billing_invoices.id"), nullable=False),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("end_to_end_id", sa.String(35), nullable=False),
        sa.Column("mandate_reference", sa.String(35)),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("booked_on", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(35)),
        sa.Column("payment_id", sa.Uuid(), sa.ForeignKey("billing_payments.id")),
        sa.UniqueConstraint("invoice_id", "outcome", name="uq_billing_bank_entries_outcome"),
        sa.CheckConstraint(
            "outcome IN ('rejected', 'settled', 'returned')", name="ck_billing_bank_entries"
        ),  # fmt: skip
    )
    # The transferred parts a line pays, found by the rating pass (centrex/billing/rating.py).
    op.create_index("ix_cdrs_paid_by", "cdrs", ["paid_by_line_id"],
                    postgresql_where=sa.text("paid_by_line_id IS NOT NULL"))  # fmt: skip
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION centrex_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION centrex_append_only()"
        )


def downgrade() -> None:
    op.drop_index("ix_cdrs_paid_by", table_name="cdrs")
    for table in reversed(TABLES):
        op.drop_table(table)
