"""extensions: short extensions of lines and ring groups, unique within a customer (issue 15)

Revision ID: 0017_extensions
Revises: 0016_audit_log
Create Date: 2026-12-02

Every live line gets one (the lowest free from 200, as new lines do); ring groups get one when
given. Deleting a line or a group frees its extension.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_extensions"
down_revision: str | Sequence[str] | None = "0016_audit_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "extensions",
        sa.Column("customer_id", sa.Uuid(), sa.ForeignKey("customers.id"), primary_key=True),
        sa.Column("extension", sa.String(6), primary_key=True),
        sa.Column("line_id", sa.Uuid(), sa.ForeignKey("lines.id", ondelete="CASCADE"),
                  unique=True),  # fmt: skip
        sa.Column("ring_group_id", sa.Uuid(),
                  sa.ForeignKey("ring_groups.id", ondelete="CASCADE"), unique=True),  # fmt: skip
        sa.CheckConstraint(
            "(line_id IS NULL) <> (ring_group_id IS NULL)", name="ck_extensions_one_target"
        ),
    )
    # Lines of before: 200, 201, ... in order of creation, per customer (4 digits starting with
    # 3 skipped, as centrex/extensions/rules.py says; a customer with over 800 lines gets
    # 1000 and up for the rest, which rules.py allows too).
    op.execute(
        """
        WITH numbered AS (
            SELECT id, customer_id,
                   row_number() OVER (PARTITION BY customer_id ORDER BY created_at, id) - 1 AS n
            FROM lines WHERE deleted_at IS NULL
        ), candidates AS (
            SELECT id, customer_id, CASE WHEN n < 800 THEN 200 + n ELSE 4000 + n END AS ext
            FROM numbered
        )
        INSERT INTO extensions (customer_id, extension, line_id)
        SELECT customer_id, ext::text, id FROM candidates
        """
    )


def downgrade() -> None:
    op.drop_table("extensions")
