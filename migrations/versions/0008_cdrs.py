"""CDRs: call attempts recorded with the admission decision, CDRs, the journal checkpoint

Revision ID: 0008_cdrs
Revises: 0007_ring_groups
Create Date: 2026-11-26

``centrex_admit_call`` now also records what it decided in ``call_attempts`` (same statement,
no extra round trip on the call path): the CDR shipper joins it to Asterisk's channel events.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_cdrs"
down_revision: str | Sequence[str] | None = "0007_ring_groups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADMIT_V3 = """
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
    p_hunt boolean
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    line_ids uuid[] := array_remove(ARRAY[p_caller_line, p_callee_line], NULL);
    members uuid[] := coalesce(p_members, ARRAY[]::uuid[]);
    counts jsonb := '{}'::jsonb;
    caps jsonb := '{}'::jsonb;
    room boolean := true;
    picked uuid[] := ARRAY[]::uuid[];
    remaining uuid[];
    r record;
    i integer;
BEGIN
    -- Concurrent admissions touching the same lines queue here; id order: no deadlock between
    -- two calls joining the same lines. NO KEY UPDATE: foreign-key checks still pass.
    PERFORM 1 FROM lines WHERE id = ANY(line_ids || members) ORDER BY id FOR NO KEY UPDATE;
    -- A new statement, a new snapshot (READ COMMITTED): it sees every call committed by whoever
    -- held these locks before us.
    FOR r IN
        SELECT l.id, l.max_calls,
               (SELECT count(*) FROM active_call_legs g WHERE g.line_id = l.id) AS n
        FROM lines l WHERE l.id = ANY(line_ids || members)
    LOOP
        counts := counts || jsonb_build_object(r.id::text, r.n);
        caps := caps || jsonb_build_object(r.id::text, r.max_calls);
        IF r.id = ANY(line_ids) THEN
            room := room AND r.n < r.max_calls;
        END IF;
    END LOOP;
    IF p_ring_group IS NOT NULL THEN
        -- Members with room, in the group's order; a member at its limit is skipped.
        FOR i IN 1..coalesce(array_length(members, 1), 0) LOOP
            IF (counts->>(members[i]::text))::int < (caps->>(members[i]::text))::int THEN
                picked := picked || members[i];
                IF p_hunt THEN
                    remaining := members[i + 1:];
                    EXIT;
                END IF;
            END IF;
        END LOOP;
        room := room AND cardinality(picked) > 0;
    END IF;
    IF room THEN
        INSERT INTO active_calls (id, node, channel_id, direction, caller, callee,
                                  caller_line_id, callee_line_id, max_duration_s, started_at,
                                  ring_group_id, hunt_remaining)
        VALUES (p_call_id, p_node, p_channel_id, p_direction, p_caller, p_callee,
                p_caller_line, p_callee_line, p_max_duration_s, p_started_at,
                p_ring_group, CASE WHEN p_hunt THEN coalesce(remaining, ARRAY[]::uuid[]) END)
        ON CONFLICT (node, channel_id) DO NOTHING;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('admitted', false, 'duplicate', true, 'counts', counts);
        END IF;
        INSERT INTO active_call_legs (call_id, line_id, role)
        SELECT p_call_id, leg.line_id, leg.role
        FROM (VALUES (p_caller_line, 'caller'), (p_callee_line, 'callee')) AS leg(line_id, role)
        WHERE leg.line_id IS NOT NULL
        UNION ALL
        SELECT p_call_id, m, 'member' FROM unnest(picked) AS m;
    END IF;
    -- What was decided, for the CDR (joined to Asterisk's events when the call has ended).
    INSERT INTO call_attempts (node, channel_id, call_id, outcome, direction, caller, callee,
                               caller_line_id, callee_line_id, ring_group_id, max_duration_s,
                               decided_at)
    VALUES (p_node, p_channel_id, p_call_id,
            CASE WHEN room THEN 'admitted' ELSE 'refused_limit' END, p_direction, p_caller,
            p_callee, p_caller_line, p_callee_line, p_ring_group, p_max_duration_s, p_started_at)
    ON CONFLICT (node, channel_id) DO NOTHING;
    RETURN jsonb_build_object('admitted', room, 'duplicate', false, 'counts', counts,
                              'members', to_jsonb(picked));
END;
$$;
"""


def upgrade() -> None:
    op.create_table('call_attempts',
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('channel_id', sa.String(length=64), nullable=False),
    sa.Column('call_id', sa.Uuid(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('direction', sa.String(length=16), nullable=False),
    sa.Column('caller', sa.String(length=64), nullable=False),
    sa.Column('callee', sa.String(length=64), nullable=False),
    sa.Column('caller_line_id', sa.Uuid(), nullable=True),
    sa.Column('callee_line_id', sa.Uuid(), nullable=True),
    sa.Column('ring_group_id', sa.Uuid(), nullable=True),
    sa.Column('max_duration_s', sa.Integer(), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('node', 'channel_id')
    )
    op.create_table('cdr_checkpoints',
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('journal', sa.String(length=255), nullable=False),
    sa.Column('offset', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('node')
    )
    op.create_table('cdrs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('linkedid', sa.String(length=64), nullable=False),
    sa.Column('call_id', sa.Uuid(), nullable=True),
    sa.Column('customer_id', sa.Uuid(), nullable=True),
    sa.Column('caller_line_id', sa.Uuid(), nullable=True),
    sa.Column('callee_line_id', sa.Uuid(), nullable=True),
    sa.Column('ring_group_id', sa.Uuid(), nullable=True),
    sa.Column('dialled_number', sa.String(length=64), nullable=True),
    sa.Column('direction', sa.String(length=16), nullable=False),
    sa.Column('caller', sa.String(length=64), nullable=False),
    sa.Column('callee', sa.String(length=64), nullable=False),
    sa.Column('destination_country', sa.String(length=2), nullable=True),
    sa.Column('start_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('answer_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('end_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('billed_s', sa.Integer(), nullable=False),
    sa.Column('disposition', sa.String(length=16), nullable=False),
    sa.Column('q850_cause', sa.Integer(), nullable=True),
    sa.Column('sip_code', sa.Integer(), nullable=False),
    sa.Column('written_at', sa.DateTime(timezone=True), server_default=sa.text('clock_timestamp()'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('node', 'linkedid', name='uq_cdrs_node_linkedid')
    )
    op.create_index('ix_cdrs_callee_line_start', 'cdrs', ['callee_line_id', 'start_at'], unique=False)
    op.create_index('ix_cdrs_caller_line_start', 'cdrs', ['caller_line_id', 'start_at'], unique=False)
    op.create_index('ix_cdrs_customer_start', 'cdrs', ['customer_id', 'start_at'], unique=False)
    op.create_index('ix_cdrs_start', 'cdrs', ['start_at', 'id'], unique=False)
    op.execute("DROP FUNCTION centrex_admit_call")
    op.execute(ADMIT_V3)


def downgrade() -> None:
    import importlib.util
    from pathlib import Path

    op.execute("DROP FUNCTION centrex_admit_call")
    path = Path(__file__).with_name("0007_ring_groups.py")
    spec = importlib.util.spec_from_file_location("revision_0007", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    op.execute(module.ADMIT_V2)
    op.drop_table("cdrs")
    op.drop_table("cdr_checkpoints")
    op.drop_table("call_attempts")
