"""contract life: service interruptions, equipment repairs and condition checks, contract
changes, directory preferences per number (issue 18, art. 10, 12, 13, 21)

Revision ID: 0029_contract_life
Revises: 0028_bank_files
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0029_contract_life"
down_revision: str | Sequence[str] | None = "0028_bank_files"
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
        "service_interruptions",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("customer_id", sa.Uuid(), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("line_ids", sa.ARRAY(sa.Uuid())),
        _at("started_at"),
        _at("ended_at", nullable=True),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("attributable_to_operator", sa.Boolean(), nullable=False),
        _at("created_at", default="now()"),
        sa.CheckConstraint(
            "ended_at IS NULL OR ended_at > started_at", name="ck_service_interruptions_dates"
        ),
    )
    op.create_index(
        "ix_service_interruptions_customer_id", "service_interruptions", ["customer_id"]
    )

    op.drop_constraint("ck_equipment_status", "equipment", type_="check")
    op.create_check_constraint(
        "ck_equipment_status",
        "equipment",
        "status IN ('in_service', 'returned', 'not_returned', 'exchanged')",
    )
    op.add_column("equipment", sa.Column("checked_on", sa.Date()))
    op.add_column(
        "equipment", sa.Column("replaces_id", sa.Uuid(), sa.ForeignKey("equipment.id"))
    )

    op.create_table(
        "equipment_repairs",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("equipment_id", sa.Uuid(), sa.ForeignKey("equipment.id"), nullable=False),
        sa.Column("reported_on", sa.Date(), nullable=False),
        sa.Column("cause", sa.String(24), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("covered", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("quote_cents", sa.Integer()),
        sa.Column("decided_on", sa.Date()),
        sa.Column("replacement_id", sa.Uuid(), sa.ForeignKey("equipment.id")),
        sa.Column("charge_id", sa.Uuid(), sa.ForeignKey("contract_charges.id")),
        sa.Column("note", sa.Text(), nullable=False),
        _at("created_at", default="now()"),
        sa.CheckConstraint(
            "cause IN ('inherent_defect', 'lightning', 'abnormal_use', 'unauthorised_repair')",
            name="ck_equipment_repairs_cause",
        ),
        sa.CheckConstraint(
            "status IN ('quoted', 'accepted', 'declined', 'done')",
            name="ck_equipment_repairs_status",
        ),
    )
    op.create_index("ix_equipment_repairs_equipment_id", "equipment_repairs", ["equipment_id"])

    op.create_table(
        "contract_changes",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("contract_id", sa.Uuid(), sa.ForeignKey("contracts.id"), nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("plan_code", sa.String(32)),
        sa.Column("status", sa.String(10), nullable=False),
        _at("notified_at", nullable=True),
        sa.Column("effective_on", sa.Date()),
        _at("created_at", default="now()"),
        sa.CheckConstraint("kind IN ('conditions', 'tariff')", name="ck_contract_changes_kind"),
        sa.CheckConstraint(
            "status IN ('notifying', 'notified', 'in_effect', 'lapsed')",
            name="ck_contract_changes_status",
        ),
    )
    op.create_index("ix_contract_changes_contract_id", "contract_changes", ["contract_id"])

    op.create_table(
        "directory_listings",
        sa.Column("e164", sa.String(16), sa.ForeignKey("numbers.e164"), primary_key=True),
        sa.Column("customer_id", sa.Uuid(), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("listed", sa.Boolean(), nullable=False),
        sa.Column("listing_name", sa.String(200)),
        sa.Column("opposes_prospection", sa.Boolean(), nullable=False),
        sa.Column("opposes_reverse_lookup", sa.Boolean(), nullable=False),
        _at("updated_at"),
    )
    op.create_index("ix_directory_listings_customer_id", "directory_listings", ["customer_id"])


def downgrade() -> None:
    op.drop_table("directory_listings")
    op.drop_table("contract_changes")
    op.drop_table("equipment_repairs")
    op.drop_column("equipment", "replaces_id")
    op.drop_column("equipment", "checked_on")
    op.execute("UPDATE equipment SET status = 'returned' WHERE status = 'exchanged'")
    op.drop_constraint("ck_equipment_status", "equipment", type_="check")
    op.create_check_constraint(
        "ck_equipment_status", "equipment", "status IN ('in_service', 'returned', 'not_returned')"
    )
    op.drop_table("service_interruptions")
