"""initial schema: customers, lines, enum sync_state

Revision ID: 0001_initial
Revises:
Create Date: 2025-11-26

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("external_ref", sa.String(length=100), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("external_ref"),
    )
    op.create_table(
        "lines",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("sip_username", sa.String(length=64), nullable=False),
        sa.Column("sip_ha1", sa.String(length=32), nullable=False),
        sa.Column("sip_realm", sa.String(length=64), nullable=False),
        sa.Column("max_calls", sa.Integer(), server_default="2", nullable=False),
        sa.Column("max_call_duration_s", sa.Integer(), nullable=True),
        sa.Column(
            "sync_state",
            sa.Enum("pending", "synced", name="sync_state"),
            nullable=False,
        ),
        sa.Column("sync_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sip_username"),
    )
    op.create_index(
        "ix_lines_customer_live",
        "lines",
        ["customer_id"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_lines_customer_live", table_name="lines")
    op.drop_table("lines")
    op.drop_table("customers")
    sa.Enum(name="sync_state").drop(op.get_bind(), checkfirst=True)
