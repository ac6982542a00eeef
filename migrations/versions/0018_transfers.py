"""transfers: a transferred call continues the call it came from, with its payers (issue 15)

Revision ID: 0018_transfers
Revises: 0017_extensions
Create Date: 2026-12-03

- ``active_calls.transfer_of``: the call a transferred call continues; ``transfers``: how many
  transfers its Asterisk call (linked id) has had, which names its CDR part.
- ``active_call_legs.role`` may be ``payer``: a line paying for an outside leg of the call,
  counted against its limit though its phone has left (docs/transfers.md).
- ``call_attempts`` and ``cdrs``: ``transfer_of`` (the daemon's call id of the call it
  continues) and ``paid_by_line_id`` (the line billed for its outside leg); ``call_attempts``
  also the deadline a transferred call keeps, so its CDR says "cut" when it was cut there.
- ``centrex_merge_transfer``: an attended transfer's two calls become one.
- ``centrex_transfer_call``: the transfer's admission, one statement like ``centrex_admit_call``:
  locks the lines, counts the target's calls without the call being transferred, and if there is
  room replaces that call by the transferred one; its decision goes to ``call_attempts`` either
  way.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_transfers"
down_revision: str | Sequence[str] | None = "0017_extensions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRANSFER = """
CREATE FUNCTION centrex_transfer_call(
    p_old_call uuid,
    p_call_id uuid,
    p_node text,
    p_channel_id text,
    p_attempt_key text,
    p_direction text,
    p_caller text,
    p_callee text,
    p_caller_line uuid,
    p_callee_line uuid,
    p_payers uuid[],
    p_paid_by uuid,
    p_max_duration_s integer,
    p_started_at timestamptz,
    p_deadline_at timestamptz,
    p_transfers integer,
    p_emergency boolean
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    line_ids uuid[] := array_remove(ARRAY[p_caller_line, p_callee_line], NULL)
                       || coalesce(p_payers, ARRAY[]::uuid[]);
    n integer := 0;
    cap integer;
    room boolean := true;
BEGIN
    -- As centrex_admit_call: the lines' rows in id order, then a fresh count.
    PERFORM 1 FROM lines WHERE id = ANY(line_ids) ORDER BY id FOR NO KEY UPDATE;
    PERFORM 1 FROM active_calls WHERE id = p_old_call FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('admitted', false, 'gone', true);
    END IF;
    IF p_callee_line IS NOT NULL AND NOT p_emergency THEN
        SELECT count(*) INTO n FROM active_call_legs g
        WHERE g.line_id = p_callee_line AND g.call_id <> p_old_call;
        SELECT max_calls INTO cap FROM lines WHERE id = p_callee_line;
        room := n < cap;
    END IF;
    IF room THEN
        DELETE FROM active_calls WHERE id = p_old_call;
        INSERT INTO active_calls (id, node, channel_id, direction, caller, callee,
                                  caller_line_id, callee_line_id, max_duration_s, started_at,
                                  deadline_at, transfer_of, transfers)
        VALUES (p_call_id, p_node, p_channel_id, p_direction, p_caller, p_callee,
                p_caller_line, p_callee_line, p_max_duration_s, p_started_at,
                p_deadline_at, p_old_call, p_transfers);
        INSERT INTO active_call_legs (call_id, line_id, role)
        SELECT p_call_id, leg.line_id, leg.role
        FROM (VALUES (p_caller_line, 'caller', 1), (p_callee_line, 'callee', 2)) AS leg(line_id, role, o)
        WHERE leg.line_id IS NOT NULL
        UNION ALL
        SELECT p_call_id, pay, 'payer' FROM unnest(coalesce(p_payers, ARRAY[]::uuid[])) AS pay
        ON CONFLICT DO NOTHING;  -- a line counts once per call, whatever its roles
    END IF;
    INSERT INTO call_attempts (node, channel_id, call_id, outcome, direction, caller, callee,
                               caller_line_id, callee_line_id, ring_group_id, max_duration_s,
                               decided_at, reason, transfer_of, paid_by_line_id, deadline_at)
    VALUES (p_node, p_attempt_key, p_call_id,
            CASE WHEN room THEN 'admitted' ELSE 'refused_limit' END, p_direction, p_caller,
            p_callee, p_caller_line, p_callee_line, NULL, p_max_duration_s, p_started_at,
            CASE WHEN room THEN NULL ELSE 'transfer target at its limit' END,
            p_old_call, p_paid_by, p_deadline_at)
    ON CONFLICT (node, channel_id) DO NOTHING;
    RETURN jsonb_build_object('admitted', room, 'gone', false, 'count', n);
END;
$$;
"""

MERGE = """
CREATE FUNCTION centrex_merge_transfer(
    p_first uuid,
    p_second uuid,
    p_call_id uuid,
    p_node text,
    p_channel_id text,
    p_direction text,
    p_caller text,
    p_callee text,
    p_caller_line uuid,
    p_callee_line uuid,
    p_payers uuid[],
    p_max_duration_s integer,
    p_started_at timestamptz,
    p_answered_at timestamptz,
    p_deadline_at timestamptz,
    p_transfers integer,
    p_attempt_key text,
    p_paid_by uuid
) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    -- An attended transfer: Asterisk has joined the two calls' other parties already. Nobody
    -- new is counted, so no room is checked: both calls' rows give way to one.
    PERFORM 1 FROM active_calls WHERE id = ANY(ARRAY[p_first, p_second]) ORDER BY id FOR UPDATE;
    IF (SELECT count(*) FROM active_calls WHERE id = ANY(ARRAY[p_first, p_second])) < 2 THEN
        RETURN false;
    END IF;
    DELETE FROM active_calls WHERE id = ANY(ARRAY[p_first, p_second]);
    INSERT INTO active_calls (id, node, channel_id, direction, caller, callee, caller_line_id,
                              callee_line_id, max_duration_s, started_at, answered_at,
                              deadline_at, transfer_of, transfers)
    VALUES (p_call_id, p_node, p_channel_id, p_direction, p_caller, p_callee, p_caller_line,
            p_callee_line, p_max_duration_s, p_started_at, p_answered_at, p_deadline_at,
            p_first, p_transfers);
    INSERT INTO active_call_legs (call_id, line_id, role)
    SELECT p_call_id, leg.line_id, leg.role
    FROM (VALUES (p_caller_line, 'caller'), (p_callee_line, 'callee')) AS leg(line_id, role)
    WHERE leg.line_id IS NOT NULL
    UNION ALL
    SELECT p_call_id, pay, 'payer' FROM unnest(coalesce(p_payers, ARRAY[]::uuid[])) AS pay
    ON CONFLICT DO NOTHING;
    -- The joined part's CDR (keyed as the CDR shipper keys it, docs/transfers.md).
    INSERT INTO call_attempts (node, channel_id, call_id, outcome, direction, caller, callee,
                               caller_line_id, callee_line_id, ring_group_id, max_duration_s,
                               decided_at, reason, transfer_of, paid_by_line_id, deadline_at)
    VALUES (p_node, p_attempt_key, p_call_id, 'admitted', p_direction, p_caller, p_callee,
            p_caller_line, p_callee_line, NULL, p_max_duration_s, p_started_at, NULL, p_first,
            p_paid_by, p_deadline_at)
    ON CONFLICT (node, channel_id) DO NOTHING;
    RETURN true;
END;
$$;
"""
MERGE_SIGNATURE = (
    "uuid, uuid, uuid, text, text, text, text, text, uuid, uuid, uuid[], integer, timestamptz,"
    " timestamptz, timestamptz, integer, text, uuid"
)

SIGNATURE = (
    "uuid, uuid, text, text, text, text, text, text, uuid, uuid, uuid[], uuid, integer,"
    " timestamptz, timestamptz, integer, boolean"
)


def upgrade() -> None:
    op.add_column("active_calls", sa.Column("transfer_of", sa.Uuid(), nullable=True))
    op.add_column(
        "active_calls",
        sa.Column("transfers", sa.Integer(), nullable=False, server_default="0"),
    )
    for table in ("call_attempts", "cdrs"):
        op.add_column(table, sa.Column("transfer_of", sa.Uuid(), nullable=True))
        op.add_column(table, sa.Column("paid_by_line_id", sa.Uuid(), nullable=True))
    op.add_column(
        "call_attempts", sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(TRANSFER)
    op.execute(MERGE)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION centrex_merge_transfer({MERGE_SIGNATURE})")
    op.execute(f"DROP FUNCTION centrex_transfer_call({SIGNATURE})")
    op.execute("DELETE FROM active_call_legs WHERE role = 'payer'")
    op.drop_column("call_attempts", "deadline_at")
    for table in ("cdrs", "call_attempts"):
        op.drop_column(table, "paid_by_line_id")
        op.drop_column(table, "transfer_of")
    op.drop_column("active_calls", "transfers")
    op.drop_column("active_calls", "transfer_of")
