"""contracts: contracts, their charges and journal, scheduled steps (issue 18)

Revision ID: 0021_contracts
Revises: 0020_billing
Create Date: 2026-12-03

The journal is append-only (``centrex_append_only()``, 0012): what happened to a contract is
never rewritten.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_contracts"
down_revision: str | Sequence[str] | None = "0020_billing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _at(name: str, nullable: bool = False, default: str | None = None) -> sa.Column:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.text(default) if default else None,
    )


def upgrade() -> None:
    op.create_table(
        "contracts",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("customer_id", sa.Uuid(), sa.ForeignKey("customers.id"), nullable=False),
        _at("accepted_at"),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("initial_months", sa.Integer(), nullable=False),
        sa.Column("renewal_months", sa.Integer(), nullable=False),
        sa.Column("monthly_fee_cents", sa.Integer(), nullable=False),
        sa.Column("term_ends_on", sa.Date(), nullable=False),
        sa.Column("renewals", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("notice_by", sa.String(12)),
        sa.Column("notice_received_on", sa.Date()),
        sa.Column("termination_kind", sa.String(20)),
        sa.Column("termination_reason", sa.Text()),
        sa.Column("ends_on", sa.Date()),
        _at("terminated_at", nullable=True),
        _at("created_at", default="now()"),
        sa.CheckConstraint(
            "status IN ('active', 'ending', 'terminated')", name="ck_contracts_status"
        ),
        sa.CheckConstraint("initial_months > 0 AND renewal_months > 0", name="ck_contracts_months"),
    )
    op.create_index("ix_contracts_customer_id", "contracts", ["customer_id"])
    op.create_index(
        "ux_contracts_in_force",
        "contracts",
        ["customer_id"],
        unique=True,
        postgresql_where=sa.text("status <> 'terminated'"),
    )
    op.create_table(
        "scheduled_steps",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("key", sa.String(120), nullable=False, unique=True),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        _at("due_at"),
        sa.Column("status", sa.String(8), nullable=False),
        _at("done_at", nullable=True),
        sa.Column("outcome", sa.Text()),
        _at("created_at", default="now()"),
        sa.CheckConstraint("status IN ('pending', 'done')", name="ck_scheduled_steps_status"),
    )
    op.create_index(
        "ix_scheduled_steps_due",
        "scheduled_steps",
        ["due_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "equipment",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("customer_id", sa.Uuid(), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False, unique=True),
        sa.Column("mac", sa.String(17), nullable=False, unique=True),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("value_cents", sa.Integer(), nullable=False),
        sa.Column("monthly_fee_cents", sa.Integer(), nullable=False),
        sa.Column("line_id", sa.Uuid(), sa.ForeignKey("lines.id")),
        sa.Column("provided_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("returned_on", sa.Date()),
        sa.Column("condition", sa.String(8)),
        _at("created_at", default="now()"),
        sa.CheckConstraint("mode IN ('rented', 'provided')", name="ck_equipment_mode"),
        sa.CheckConstraint(
            "status IN ('in_service', 'returned', 'not_returned')", name="ck_equipment_status"
        ),
    )
    op.create_index("ix_equipment_customer_id", "equipment", ["customer_id"])
    op.create_table(
        "contract_charges",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("contract_id", sa.Uuid(), sa.ForeignKey("contracts.id")),
        sa.Column("equipment_id", sa.Uuid(), sa.ForeignKey("equipment.id")),
        sa.Column("customer_id", sa.Uuid(), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("label", sa.String(300), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_cents", sa.Integer(), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), sa.ForeignKey("billing_invoices.id")),
        _at("created_at", default="now()"),
    )
    op.create_index("ix_contract_charges_contract_id", "contract_charges", ["contract_id"])
    op.create_table(
        "contract_events",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("contract_id", sa.Uuid(), sa.ForeignKey("contracts.id"), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        _at("at"),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("step_id", sa.Uuid(), sa.ForeignKey("scheduled_steps.id")),
    )
    op.create_index("ix_contract_events_contract_id", "contract_events", ["contract_id"])
    op.execute(
        "CREATE TRIGGER contract_events_append_only BEFORE UPDATE OR DELETE ON contract_events "
        "FOR EACH ROW EXECUTE FUNCTION centrex_append_only()"
    )


def downgrade() -> None:
    for table in (
        "contract_events",
        "contract_charges",
        "equipment",
        "scheduled_steps",
        "contracts",
    ):
        op.drop_table(table)
