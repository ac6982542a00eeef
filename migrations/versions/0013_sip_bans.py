"""sip_bans: source addresses banned for guessing passwords (issue 12)

Revision ID: 0013_sip_bans
Revises: 0012_credential_renewals
Create Date: 2026-12-02

One row per ban: the guard (``centrex guard``) inserts it, the API lists it and lifts it
(``lifted_at``); the guard makes the kernel's ban set match the rows in force.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013_sip_bans"
down_revision: str | Sequence[str] | None = "0012_credential_renewals"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sip_bans",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("address", postgresql.INET(), nullable=False),
        sa.Column("banned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("evidence", postgresql.JSONB(), nullable=False),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("lifted_at", sa.DateTime(timezone=True)),
        sa.Column("lifted_by", sa.String(100)),
    )
    op.create_index("ix_sip_bans_address", "sip_bans", ["address", "banned_at"])
    # What the guard reads every second: the bans not lifted (expired ones are few to skip).
    op.create_index(
        "ix_sip_bans_not_lifted", "sip_bans", ["until"], postgresql_where=sa.text("lifted_at IS NULL")
    )


def downgrade() -> None:
    op.drop_table("sip_bans")
