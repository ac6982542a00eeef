"""usage policy: destinations, restrictions (audited), fraud suspicions, distinct-number counts

Revision ID: 0009_policy
Revises: 0008_cdrs
Create Date: 2026-11-26

Three functions keep the policy's state changes atomic:
- ``centrex_refresh_policy_levels(customer)``: each line's ``policy_level`` = the strictest
  restriction in force on it or its customer (the daemon reads it with the line);
- ``centrex_raise_suspicion(...)``: a fraud suspicion, once per line, rule and period, and its
  action (a restriction by "fraud-control") in the same transaction;
- ``centrex_count_number(...)``: a number called by a line this period; past the threshold of
  distinct numbers, raises the suspicion — so the restriction is in force for the next call.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009_policy"
down_revision: str | Sequence[str] | None = "0008_cdrs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADMIT_V4 = """
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
        -- An emergency call is never refused (it is still recorded and counted).
        IF r.id = ANY(line_ids) AND NOT p_emergency THEN
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


FUNCTIONS = [
    """
CREATE FUNCTION centrex_policy_rank(level text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE level WHEN 'suspended' THEN 3 WHEN 'emergency_only' THEN 2
                      WHEN 'national_only' THEN 1 ELSE 0 END
$$
""",
    """
CREATE FUNCTION centrex_refresh_policy_levels(p_customer uuid) RETURNS void
LANGUAGE sql AS $$
    UPDATE lines l SET policy_level = coalesce((
        SELECT r.level FROM policy_restrictions r
        WHERE r.lifted_at IS NULL
          AND ((r.target_type = 'line' AND r.target_id = l.id)
               OR (r.target_type = 'customer' AND r.target_id = l.customer_id))
        ORDER BY centrex_policy_rank(r.level) DESC LIMIT 1), 'none')
    WHERE l.customer_id = p_customer
$$
""",
    """
CREATE FUNCTION centrex_raise_suspicion(
    p_line uuid, p_rule text, p_period timestamptz, p_evidence jsonb, p_action text,
    p_customer_override boolean DEFAULT true
) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    cust uuid;
    sid uuid;
    override text;
BEGIN
    SELECT l.customer_id, c.fraud_action INTO cust, override
    FROM lines l JOIN customers c ON c.id = l.customer_id WHERE l.id = p_line;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF p_customer_override THEN
        p_action := coalesce(override, p_action);  -- the customer's own setting wins
    END IF;
    INSERT INTO fraud_suspicions (id, line_id, customer_id, rule, period_start, evidence, action)
    VALUES (gen_random_uuid(), p_line, cust, p_rule, p_period, p_evidence, p_action)
    ON CONFLICT (line_id, rule, period_start) DO NOTHING
    RETURNING id INTO sid;
    IF sid IS NOT NULL AND p_action <> 'flag' THEN
        INSERT INTO policy_restrictions (id, target_type, target_id, level, reason, actor,
                                         suspicion_id)
        VALUES (gen_random_uuid(), 'line', p_line, p_action,
                'fraud suspicion (' || p_rule || '), contract art. 16', 'fraud-control', sid);
        PERFORM centrex_refresh_policy_levels(cust);
    END IF;
    RETURN sid;
END;
$$
""",
    """
CREATE FUNCTION centrex_count_number(
    p_line uuid, p_period timestamptz, p_number text, p_threshold integer, p_action text
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    sid uuid;
BEGIN
    INSERT INTO line_period_numbers (line_id, period_start, number)
    VALUES (p_line, p_period, p_number) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('new', false);
    END IF;
    INSERT INTO line_period_counts (line_id, period_start, distinct_numbers)
    VALUES (p_line, p_period, 1)
    ON CONFLICT (line_id, period_start)
    DO UPDATE SET distinct_numbers = line_period_counts.distinct_numbers + 1
    RETURNING distinct_numbers INTO n;
    IF n > p_threshold THEN
        sid := centrex_raise_suspicion(
            p_line, 'distinct_numbers', p_period,
            jsonb_build_object('distinct_numbers', n, 'threshold', p_threshold,
                               'last_number', p_number),
            p_action);
    END IF;
    RETURN jsonb_build_object('new', true, 'count', n, 'suspicion', sid);
END;
$$
""",
]


def upgrade() -> None:
    op.create_table('destinations',
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('suspended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('suspended_reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('code')
    )
    op.create_table('line_period_counts',
    sa.Column('line_id', sa.Uuid(), nullable=False),
    sa.Column('period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('distinct_numbers', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('line_id', 'period_start')
    )
    op.create_table('line_period_numbers',
    sa.Column('line_id', sa.Uuid(), nullable=False),
    sa.Column('period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('number', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('line_id', 'period_start', 'number')
    )
    op.create_table('policy_restrictions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('target_type', sa.String(length=8), nullable=False),
    sa.Column('target_id', sa.Uuid(), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lifted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lifted_by', sa.String(length=100), nullable=True),
    sa.Column('lift_reason', sa.Text(), nullable=True),
    sa.Column('suspicion_id', sa.Uuid(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_restrictions_target', 'policy_restrictions', ['target_type', 'target_id'], unique=False)
    op.create_table('fraud_suspicions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('line_id', sa.Uuid(), nullable=False),
    sa.Column('customer_id', sa.Uuid(), nullable=False),
    sa.Column('rule', sa.String(length=32), nullable=False),
    sa.Column('period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('evidence', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['line_id'], ['lines.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('line_id', 'rule', 'period_start')
    )
    op.create_index(op.f('ix_fraud_suspicions_line_id'), 'fraud_suspicions', ['line_id'], unique=False)
    op.add_column('customers', sa.Column('email', sa.String(length=254), nullable=True))
    op.add_column("call_attempts", sa.Column("reason", sa.Text(), nullable=True))
    op.add_column("customers", sa.Column("fraud_action", sa.String(length=16), nullable=True))
    op.add_column("cdrs", sa.Column("reason", sa.Text(), nullable=True))
    op.add_column("cdrs", sa.Column("destination", sa.String(length=16), nullable=True))
    op.create_index("ix_cdrs_destination_start", "cdrs", ["destination", "start_at"])
    op.add_column('lines', sa.Column('policy_level', sa.String(length=16), server_default='none', nullable=False))
    for function in FUNCTIONS:  # one statement each: asyncpg prepares them
        op.execute(function)
    op.execute("DROP FUNCTION centrex_admit_call")
    op.execute(ADMIT_V4)
    # A French operator's starting list: France (geographic, mobile, 09). The special ranges
    # and every other country are the operator's to add.
    op.execute("INSERT INTO destinations (code, name) VALUES ('33', 'France')")


def downgrade() -> None:
    import importlib.util
    from pathlib import Path

    op.execute("DROP FUNCTION centrex_admit_call")
    spec = importlib.util.spec_from_file_location(
        "revision_0008", Path(__file__).with_name("0008_cdrs.py")
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    op.execute(module.ADMIT_V3)
    for name in (
        "centrex_count_number", "centrex_raise_suspicion", "centrex_refresh_policy_levels",
        "centrex_policy_rank",
    ):  # fmt: skip
        op.execute(f"DROP FUNCTION {name}")
    op.drop_column("lines", "policy_level")
    op.drop_index("ix_cdrs_destination_start", table_name="cdrs")
    op.drop_column("cdrs", "destination")
    op.drop_column("cdrs", "reason")
    op.drop_column("call_attempts", "reason")
    op.drop_column("customers", "email")
    op.drop_column("customers", "fraud_action")
    op.drop_index(op.f("ix_fraud_suspicions_line_id"), table_name="fraud_suspicions")
    op.drop_table("fraud_suspicions")
    op.drop_index("ix_restrictions_target", table_name="policy_restrictions")
    op.drop_table("policy_restrictions")
    op.drop_table("line_period_numbers")
    op.drop_table("line_period_counts")
    op.drop_table("destinations")
