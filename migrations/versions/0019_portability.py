"""portability: port-in and port-out requests, one in progress per number (issue 16)

Revision ID: 0019_portability
Revises: 0018_transfers
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_portability"
down_revision: str | Sequence[str] | None = "0018_transfers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "port_ins",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("customer_id", sa.Uuid(), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("e164", sa.String(16), nullable=False),
        sa.Column("national", sa.String(10), nullable=False),
        sa.Column("rio", sa.String(12)),
        sa.Column("holder_name", sa.String(200), nullable=False),
        sa.Column("requested_date", sa.Date()),
        sa.Column("line_id", sa.Uuid(), sa.ForeignKey("lines.id")),
        sa.Column("ring_group_id", sa.Uuid(), sa.ForeignKey("ring_groups.id")),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("reason", sa.String(24)),
        sa.Column("detail", sa.Text()),
        sa.Column("replacement_e164", sa.String(16)),
        sa.Column("donor_reference", sa.String(64)),
        sa.Column("porting_date", sa.Date()),
        sa.Column("slot_start", sa.DateTime(timezone=True)),
        sa.Column("slot_end", sa.DateTime(timezone=True)),
        sa.Column("donor_contract_ends_on", sa.Date()),
        sa.Column("notified_at", sa.DateTime(timezone=True)),
        sa.Column("ported_at", sa.DateTime(timezone=True)),
        sa.Column("activated_at", sa.DateTime(timezone=True)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),  # fmt: skip
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),  # fmt: skip
        sa.CheckConstraint(
            "line_id IS NULL OR ring_group_id IS NULL", name="ck_port_ins_one_destination"
        ),
    )
    op.create_index("ix_port_ins_customer_id", "port_ins", ["customer_id"])
    # Of two simultaneous requests for one number, exactly one is inserted in progress.
    op.create_index(
        "ux_port_ins_in_progress", "port_ins", ["e164"], unique=True,
        postgresql_where=sa.text("status IN ('requested', 'accepted', 'ported')"),
    )  # fmt: skip

    op.create_table(
        "port_outs",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("e164", sa.String(16), nullable=False),
        sa.Column("national", sa.String(10), nullable=False),
        sa.Column("customer_id", sa.Uuid(), sa.ForeignKey("customers.id")),
        sa.Column("rio", sa.String(12)),
        sa.Column("recipient_operator", sa.String(2), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("reason", sa.String(24)),
        sa.Column("detail", sa.Text()),
        sa.Column("porting_date", sa.Date()),
        sa.Column("slot_start", sa.DateTime(timezone=True)),
        sa.Column("ported_at", sa.DateTime(timezone=True)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),  # fmt: skip
    )
    op.create_index(
        "ux_port_outs_in_progress", "port_outs", ["e164"], unique=True,
        postgresql_where=sa.text("status = 'accepted'"),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("port_outs")
    op.drop_table("port_ins")
