"""one decision per call: a call decided again gets its first decision back

Revision ID: 0011_one_decision_per_call
Revises: 0010_policy_at_admission
Create Date: 2026-12-02

Until now ``centrex_admit_call`` looked for an earlier decision on the same channel only when
the lines had room: a call decided again (the daemon reconnected after admitting it, before
Asterisk dialled it), on a line its own first admission had filled, was refused and hung up.

The function of migration 0009 (as 0010 leaves it) is kept unchanged under the name ``centrex_admit_new_call``;
``centrex_admit_call`` is now a wrapper that first looks for the channel's call, under a lock
on the channel (so two decisions of one channel are taken one after the other), and answers
with it (``duplicate``: its call id and the ring group members it rings) before counting
anything.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011_one_decision_per_call"
down_revision: str | Sequence[str] | None = "0010_policy_at_admission"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SIGNATURE = (
    "uuid, text, text, text, text, text, uuid, uuid, integer, timestamptz, uuid, uuid[], boolean,"
    " boolean"
)

ADMIT_WRAPPER = """
CREATE FUNCTION centrex_admit_call(
    p_call_id uuid,
    p_node text,
    p_channel_id text,
    p_direction text,
    p_caller text,
    p_callee text,
    p_caller_line uuid,
    p_callee_line uuid,
    p_max_duration_s integer,
    p_started_at timestamptz,
    p_ring_group uuid,
    p_members uuid[],
    p_hunt boolean,
    p_emergency boolean DEFAULT false
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    earlier record;
BEGIN
    -- Held to the end of the statement's transaction: a second decision of this channel waits
    -- for the first to commit, then finds it. Taken before the lines' locks, by every caller.
    PERFORM pg_advisory_xact_lock(hashtextextended(p_node || '/' || p_channel_id, 0));
    SELECT c.id,
           coalesce(array_agg(g.line_id) FILTER (WHERE g.role = 'member'), ARRAY[]::uuid[])
               AS members
    INTO earlier
    FROM active_calls c LEFT JOIN active_call_legs g ON g.call_id = c.id
    WHERE c.node = p_node AND c.channel_id = p_channel_id
    GROUP BY c.id;
    IF FOUND THEN
        RETURN jsonb_build_object('admitted', true, 'duplicate', true, 'call_id', earlier.id,
                                  'counts', '{}'::jsonb, 'members', to_jsonb(earlier.members));
    END IF;
    RETURN centrex_admit_new_call(p_call_id, p_node, p_channel_id, p_direction, p_caller,
                                  p_callee, p_caller_line, p_callee_line, p_max_duration_s,
                                  p_started_at, p_ring_group, p_members, p_hunt, p_emergency);
END;
$$;
"""


def upgrade() -> None:
    op.execute(f"ALTER FUNCTION centrex_admit_call({SIGNATURE}) RENAME TO centrex_admit_new_call")
    op.execute(ADMIT_WRAPPER)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION centrex_admit_call({SIGNATURE})")
    op.execute(f"ALTER FUNCTION centrex_admit_new_call({SIGNATURE}) RENAME TO centrex_admit_call")
