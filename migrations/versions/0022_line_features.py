"""line features: forwarding, do-not-disturb, caller-ID privacy per line (issue 15)

Revision ID: 0022_line_features
Revises: 0021_contracts
Create Date: 2026-12-03

``line_features``: one row per line that changed its settings (none: the defaults).
``centrex_forward_leg``: a call forwarded, once its line was rung (busy, no answer,
unregistered), to another line of the platform: the new line's limit is checked and its leg
replaces the forwarding line's in one statement, under the new line's row lock, like an
admission (migration 0009); a line at its limit is not rung.
``call_forwards``: each forward the daemon decided, until the CDR shipper has written the
call's records: the forward gets a CDR of its own, billed to the forwarding line, its
``leg_of`` the id of the call's CDR (new column ``cdrs.leg_of``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022_line_features"
down_revision: str | Sequence[str] | None = "0021_contracts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FORWARD_LEG = """
CREATE FUNCTION centrex_forward_leg(p_node text, p_channel_id text, p_line uuid, p_callee text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_call uuid;
    n integer;
    cap integer;
BEGIN
    SELECT id INTO v_call FROM active_calls WHERE node = p_node AND channel_id = p_channel_id;
    IF v_call IS NULL THEN
        RETURN false;
    END IF;
    SELECT max_calls INTO cap FROM lines WHERE id = p_line FOR NO KEY UPDATE;
    SELECT count(*) INTO n FROM active_call_legs g WHERE g.line_id = p_line;
    IF cap IS NULL OR n >= cap THEN
        RETURN false;
    END IF;
    DELETE FROM active_call_legs g WHERE g.call_id = v_call AND g.role = 'callee';
    INSERT INTO active_call_legs (call_id, line_id, role) VALUES (v_call, p_line, 'callee')
    ON CONFLICT DO NOTHING;
    UPDATE active_calls SET callee_line_id = p_line, callee = p_callee WHERE id = v_call;
    RETURN true;
END;
$$;
"""


def upgrade() -> None:
    op.create_table(
        "line_features",
        sa.Column("line_id", sa.Uuid(), sa.ForeignKey("lines.id", ondelete="CASCADE"),
                  primary_key=True),  # fmt: skip
        sa.Column("forward_unconditional", sa.String(24)),
        sa.Column("forward_busy", sa.String(24)),
        sa.Column("forward_no_answer", sa.String(24)),
        sa.Column("forward_no_answer_s", sa.Integer(), nullable=False, server_default="20"),
        sa.Column("forward_unregistered", sa.String(24)),
        sa.Column("dnd", sa.Boolean(), nullable=False, server_default="false"),
        sa.Column("privacy", sa.Boolean(), nullable=False, server_default="false"),
        sa.Column("last_emergency_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),  # fmt: skip
        sa.CheckConstraint(
            "forward_no_answer_s BETWEEN 5 AND 120", name="ck_line_features_no_answer_s"
        ),
    )
    op.execute(FORWARD_LEG)
    op.create_table(
        "call_forwards",
        sa.Column("node", sa.String(64), primary_key=True),
        sa.Column("channel_id", sa.String(64), primary_key=True),
        sa.Column("hop", sa.Integer(), primary_key=True),
        sa.Column("line_id", sa.Uuid(), nullable=False),  # the forwarding line
        sa.Column("target", sa.String(64), nullable=False),  # E.164 or the line's number
        sa.Column("target_line_id", sa.Uuid()),  # on-net: the line it rang
        sa.Column("direction", sa.String(16), nullable=False),  # outbound | on-net
        sa.Column("condition", sa.String(16), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.add_column("cdrs", sa.Column("leg_of", sa.Uuid()))


def downgrade() -> None:
    op.drop_column("cdrs", "leg_of")
    op.drop_table("call_forwards")
    op.execute("DROP FUNCTION centrex_forward_leg(text, text, uuid, text)")
    op.drop_table("line_features")
