"""api_tokens: scoped API tokens; restrictions and renewals name the token that acted (issue 13)

Revision ID: 0015_api_tokens
Revises: 0014_line_media_encryption
Create Date: 2026-12-02

One row per token issued through ``POST /v1/tokens``: its scope (operator, operator:read, or
customer bound to one customer), a sha256 of its secret, its expiry and revocation. The
bootstrap token (CENTREX_API_TOKEN) has no row.

Restrictions and credential renewals record the principal (token name and id) that made or
lifted them; their free-text ``actor`` stays, as a note. Null: made by the platform itself
(fraud control) or before this migration.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_api_tokens"
down_revision: str | Sequence[str] | None = "0014_line_media_encryption"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("customer_id", sa.Uuid(), sa.ForeignKey("customers.id")),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(
            "scope IN ('operator', 'operator:read', 'customer')", name="ck_api_tokens_scope"
        ),
        sa.CheckConstraint(
            "(scope = 'customer') = (customer_id IS NOT NULL)", name="ck_api_tokens_customer"
        ),
    )
    op.create_index("ix_api_tokens_customer", "api_tokens", ["customer_id"])
    for table, prefixes in (
        ("policy_restrictions", ("principal", "lifted_by_principal")),
        ("credential_renewals", ("principal",)),
    ):
        for prefix in prefixes:
            op.add_column(table, sa.Column(prefix, sa.String(100)))
            op.add_column(table, sa.Column(f"{prefix}_token_id", sa.Uuid()))


def downgrade() -> None:
    for table, column in (
        ("policy_restrictions", "principal"),
        ("policy_restrictions", "lifted_by_principal"),
        ("credential_renewals", "principal"),
    ):
        op.drop_column(table, column)
        op.drop_column(table, f"{column}_token_id")
    op.drop_table("api_tokens")
