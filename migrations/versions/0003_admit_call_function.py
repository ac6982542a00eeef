"""admission in one statement: centrex_admit_call()

Revision ID: 0003_admit_call_function
Revises: 0002_active_calls
Create Date: 2026-11-26

Why a function: the two-call limit must hold across daemons and nodes, so the count and the
insert happen under a lock on the lines' rows. Done as several round trips from the daemon, that
lock was held across the daemon's event loop (lookups, inserts, commit, each waiting its turn
behind other calls), and every call to a busy line queued behind it. Inside one statement the
lock is held for the count and the insert only.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_admit_call_function"
down_revision: str | Sequence[str] | None = "0002_active_calls"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
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
    p_started_at timestamptz
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    line_ids uuid[] := array_remove(ARRAY[p_caller_line, p_callee_line], NULL);
    counts jsonb := '{}'::jsonb;
    room boolean := true;
    r record;
BEGIN
    -- Concurrent admissions touching the same lines queue here; id order: no deadlock between
    -- two calls joining the same two lines. NO KEY UPDATE: foreign-key checks still pass.
    PERFORM 1 FROM lines WHERE id = ANY(line_ids) ORDER BY id FOR NO KEY UPDATE;
    -- A new statement, a new snapshot (READ COMMITTED): it sees every call committed by whoever
    -- held these locks before us.
    FOR r IN
        SELECT l.id, l.max_calls,
               (SELECT count(*) FROM active_call_legs g WHERE g.line_id = l.id) AS n
        FROM lines l WHERE l.id = ANY(line_ids)
    LOOP
        counts := counts || jsonb_build_object(r.id::text, r.n);
        room := room AND r.n < r.max_calls;
    END LOOP;
    IF room THEN
        INSERT INTO active_calls (id, node, channel_id, direction, caller, callee,
                                  caller_line_id, callee_line_id, max_duration_s, started_at)
        VALUES (p_call_id, p_node, p_channel_id, p_direction, p_caller, p_callee,
                p_caller_line, p_callee_line, p_max_duration_s, p_started_at)
        ON CONFLICT (node, channel_id) DO NOTHING;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('admitted', false, 'duplicate', true, 'counts', counts);
        END IF;
        INSERT INTO active_call_legs (call_id, line_id, role)
        SELECT p_call_id, leg.line_id, leg.role
        FROM (VALUES (p_caller_line, 'caller'), (p_callee_line, 'callee')) AS leg(line_id, role)
        WHERE leg.line_id IS NOT NULL;
    END IF;
    RETURN jsonb_build_object('admitted', room, 'duplicate', false, 'counts', counts);
END;
$$;
"""
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION centrex_admit_call")
