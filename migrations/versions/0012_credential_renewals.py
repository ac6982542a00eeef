"""credential renewals: the audit trail of a line's SIP password renewals (contract art. 16, 17)

Revision ID: 0012_credential_renewals
Revises: 0011_one_decision_per_call
Create Date: 2026-12-03

- ``credential_renewals``: who renewed a line's password, when and why. Never the password nor
  its hash. Append-only: a trigger refuses UPDATE and DELETE, so the trail cannot be rewritten
  through the application's own database role either.
- ``lines.registrations_purge_pending``: the line's credentials were renewed and the devices
  registered with the old ones have not been removed from Asterisk yet (Asterisk was
  unreachable). The reconciler removes them once it has pushed the new credentials.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_credential_renewals"
down_revision: str | Sequence[str] | None = "0011_one_decision_per_call"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY_FUNCTION = """
CREATE FUNCTION centrex_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (an audit trail)', TG_TABLE_NAME;
END;
$$
"""
APPEND_ONLY_TRIGGER = """
CREATE TRIGGER credential_renewals_append_only
    BEFORE UPDATE OR DELETE ON credential_renewals
    FOR EACH ROW EXECUTE FUNCTION centrex_append_only()
"""


def upgrade() -> None:
    op.create_table(
        "credential_renewals",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("line_id", sa.Uuid(), sa.ForeignKey("lines.id"), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.create_index("ix_credential_renewals_line", "credential_renewals", ["line_id"])
    op.execute(APPEND_ONLY_FUNCTION)
    op.execute(APPEND_ONLY_TRIGGER)
    op.add_column(
        "lines",
        sa.Column(
            "registrations_purge_pending", sa.Boolean(), server_default="false", nullable=False
        ),
    )


def downgrade() -> None:
    op.drop_column("lines", "registrations_purge_pending")
    op.drop_table("credential_renewals")
    op.execute("DROP FUNCTION centrex_append_only()")
