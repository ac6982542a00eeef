"""features rest (issue 15): a pickup takes a ring group's call too; music on hold per customer

Revision ID: 0027_features_rest
Revises: 0026_kamailio
Create Date: 2026-12-03

``centrex_pickup_leg``: the picking line's leg replaces every leg that rings for the call (the
line rung, or the members of the ring group rung), in one statement under the picker's row
lock, refused at the picker's limit. A picker that is itself one of the ringing members is not
counted twice: its member leg becomes the callee's.

``customer_music_on_hold``: a customer's uploaded music, and the view ``asterisk_musiconhold``
Asterisk's res_musiconhold reads its realtime classes from (res_config_pgsql, as voicemail):
one class ``customer-<id>`` per customer with music, its files in
``/usr/share/asterisk/centrex-moh/<id>`` (centrex/moh/rules.py). Realtime classes are looked
up at each hold (``cachertclasses=no``): an upload or a deletion needs no reload.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027_features_rest"
down_revision: str | Sequence[str] | None = "0026_kamailio"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PICKUP_LEG = """
CREATE FUNCTION centrex_pickup_leg(p_node text, p_channel_id text, p_line uuid, p_callee text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_call uuid;
    n integer;
    cap integer;
BEGIN
    -- The call first, then the line: the order centrex_hunt_next takes them in.
    SELECT id INTO v_call FROM active_calls
    WHERE node = p_node AND channel_id = p_channel_id AND answered_at IS NULL FOR UPDATE;
    SELECT max_calls INTO cap FROM lines WHERE id = p_line AND deleted_at IS NULL
    FOR NO KEY UPDATE;
    IF v_call IS NULL OR cap IS NULL THEN
        RETURN false;
    END IF;
    SELECT count(*) INTO n FROM active_call_legs g
    WHERE g.line_id = p_line AND NOT (g.call_id = v_call AND g.role IN ('callee', 'member'));
    IF n >= cap THEN
        RETURN false;
    END IF;
    DELETE FROM active_call_legs g WHERE g.call_id = v_call AND g.role IN ('callee', 'member');
    INSERT INTO active_call_legs (call_id, line_id, role) VALUES (v_call, p_line, 'callee')
    ON CONFLICT DO NOTHING;
    UPDATE active_calls SET callee_line_id = p_line, callee = p_callee, hunt_remaining = NULL
    WHERE id = v_call;
    RETURN true;
END;
$$;
"""


MOH_VIEW = """
CREATE VIEW asterisk_musiconhold AS
SELECT 'customer-' || m.customer_id AS name, 'files'::text AS mode,
       '/usr/share/asterisk/centrex-moh/' || m.customer_id AS directory, 'alpha'::text AS sort
FROM customer_music_on_hold m
"""


def upgrade() -> None:
    op.execute(PICKUP_LEG)
    op.create_table(
        "customer_music_on_hold",
        sa.Column("customer_id", sa.Uuid(), sa.ForeignKey("customers.id", ondelete="CASCADE"),
                  primary_key=True),  # fmt: skip
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),  # fmt: skip
    )
    op.execute(MOH_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW asterisk_musiconhold")
    op.drop_table("customer_music_on_hold")
    op.execute("DROP FUNCTION centrex_pickup_leg(text, text, uuid, text)")
