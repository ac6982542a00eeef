"""audit log: every change made through the API, append-only (issue 13, docs/audit.md)

Revision ID: 0016_audit_log
Revises: 0015_api_tokens

- ``audit_log``: when, which token (id and name), what operation, which object, the changed
  fields' values before and after; never a secret's value (``withheld`` names it). Written by
  centrex.audit.recorder in the transaction of the change it records.
- Append-only: the application's role owns the table, so privileges cannot stop it; triggers
  refuse every UPDATE and DELETE (row) and TRUNCATE (statement), with
  ``centrex_append_only()`` from 0012.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016_audit_log"
down_revision: str | Sequence[str] | None = "0015_api_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGGERS = (
    """
    CREATE TRIGGER audit_log_append_only
        BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION centrex_append_only()
    """,
    """
    CREATE TRIGGER audit_log_no_truncate
        BEFORE TRUNCATE ON audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION centrex_append_only()
    """,
)


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "at",
            sa.DateTime(timezone=True),
            server_default=sa.func.clock_timestamp(),
            nullable=False,
        ),
        sa.Column("token_id", sa.Uuid(), nullable=True),
        sa.Column("token_name", sa.String(200), nullable=False),
        sa.Column("operation", sa.String(200), nullable=False),
        sa.Column("object_type", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(200), nullable=False),
        sa.Column("change", sa.String(32), nullable=False),
        sa.Column("before", postgresql.JSONB(), nullable=True),
        sa.Column("after", postgresql.JSONB(), nullable=True),
        sa.Column(
            "withheld", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False
        ),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at", "id"])
    op.create_index("ix_audit_log_object", "audit_log", ["object_type", "object_id", "at"])
    op.create_index("ix_audit_log_token", "audit_log", ["token_id", "at"])
    for trigger in TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    # Dropping the table drops its triggers; the function stays (0012's).
    op.drop_table("audit_log")
