"""node heartbeat: each node's daemon records when it last saw its Asterisk, so the surviving
nodes can release the calls of a node that never returns (issue 19, docs/cluster.md)

Revision ID: 0031_node_heartbeat
Revises: 0030_edge_bans
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0031_node_heartbeat"
down_revision: str | Sequence[str] | None = "0030_edge_bans"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cluster_nodes",
        sa.Column("node", sa.String(64), primary_key=True),
        # PostgreSQL's clock, written and judged: the nodes' clocks never matter.
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "first_seen_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
    )


def downgrade() -> None:
    op.drop_table("cluster_nodes")
