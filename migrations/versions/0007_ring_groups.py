"""ring groups, alias numbers, and admission of calls to several lines

Revision ID: 0007_ring_groups
Revises: 0006_line_main_number
Create Date: 2026-11-26

A call to a ring group counts against every member it rings (a member at its limit is skipped,
not rung), so ``centrex_admit_call`` now takes the group's members and picks, in the same
locked statement, those with room: all of them (ring-all) or the first (hunt).
``centrex_hunt_next`` moves a hunt to the next member with room. Both lock lines in id order,
like the two-line admission of 0003.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_ring_groups"
down_revision: str | Sequence[str] | None = "0006_line_main_number"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADMIT_V2 = """
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
    RETURN jsonb_build_object('admitted', room, 'duplicate', false, 'counts', counts,
                              'members', to_jsonb(picked));
END;
$$;
"""

HUNT_NEXT = """
CREATE FUNCTION centrex_hunt_next(p_node text, p_channel_id text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    c record;
    r record;
    i integer;
BEGIN
    SELECT id, hunt_remaining INTO c FROM active_calls
    WHERE node = p_node AND channel_id = p_channel_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- The member that was rung stopped ringing: it no longer counts.
    DELETE FROM active_call_legs WHERE call_id = c.id AND role = 'member';
    PERFORM 1 FROM lines WHERE id = ANY(c.hunt_remaining) ORDER BY id FOR NO KEY UPDATE;
    FOR i IN 1..coalesce(array_length(c.hunt_remaining, 1), 0) LOOP
        SELECT l.max_calls,
               (SELECT count(*) FROM active_call_legs g WHERE g.line_id = l.id) AS n
        INTO r FROM lines l WHERE l.id = c.hunt_remaining[i] AND l.deleted_at IS NULL;
        IF FOUND AND r.n < r.max_calls THEN
            INSERT INTO active_call_legs (call_id, line_id, role)
            VALUES (c.id, c.hunt_remaining[i], 'member');
            UPDATE active_calls SET hunt_remaining = c.hunt_remaining[i + 1:] WHERE id = c.id;
            RETURN jsonb_build_object('line_id', c.hunt_remaining[i]);
        END IF;
    END LOOP;
    UPDATE active_calls SET hunt_remaining = ARRAY[]::uuid[] WHERE id = c.id;
    RETURN jsonb_build_object('line_id', NULL);
END;
$$;
"""


def upgrade() -> None:
    op.create_table(
        "ring_groups",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("strategy", sa.Enum("ring_all", "hunt", name="ring_strategy"), nullable=False),
        sa.Column("ring_timeout_s", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
            nullable=False,
        ),  # fmt: skip
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ring_groups_customer_id", "ring_groups", ["customer_id"])
    op.create_table(
        "ring_group_members",
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("line_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["ring_groups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["line_id"], ["lines.id"]),
        sa.PrimaryKeyConstraint("group_id", "position"),
        sa.UniqueConstraint("group_id", "line_id"),
    )
    op.create_index("ix_ring_group_members_line_id", "ring_group_members", ["line_id"])
    op.add_column("active_calls", sa.Column("ring_group_id", sa.Uuid(), nullable=True))
    op.add_column(
        "active_calls", sa.Column("hunt_remaining", postgresql.ARRAY(sa.Uuid()), nullable=True)
    )
    op.add_column("numbers", sa.Column("line_id", sa.Uuid(), nullable=True))
    op.add_column("numbers", sa.Column("ring_group_id", sa.Uuid(), nullable=True))
    op.create_index("ix_numbers_line_id", "numbers", ["line_id"])
    op.create_index("ix_numbers_ring_group_id", "numbers", ["ring_group_id"])
    op.create_foreign_key("fk_numbers_line", "numbers", "lines", ["line_id"], ["id"])
    op.create_foreign_key(
        "fk_numbers_ring_group", "numbers", "ring_groups", ["ring_group_id"], ["id"]
    )
    op.create_check_constraint(
        "ck_numbers_one_destination", "numbers", "line_id IS NULL OR ring_group_id IS NULL"
    )
    op.execute("DROP FUNCTION centrex_admit_call")
    op.execute(ADMIT_V2)
    op.execute(HUNT_NEXT)


def downgrade() -> None:
    import importlib.util
    from pathlib import Path

    op.execute("DROP FUNCTION centrex_hunt_next")
    op.execute("DROP FUNCTION centrex_admit_call")
    # Back to the two-line function of 0003, as that migration wrote it.
    path = Path(__file__).with_name("0003_admit_call_function.py")
    spec = importlib.util.spec_from_file_location("revision_0003", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.upgrade()
    op.drop_constraint("ck_numbers_one_destination", "numbers", type_="check")
    op.drop_constraint("fk_numbers_ring_group", "numbers", type_="foreignkey")
    op.drop_constraint("fk_numbers_line", "numbers", type_="foreignkey")
    op.drop_index("ix_numbers_ring_group_id", table_name="numbers")
    op.drop_index("ix_numbers_line_id", table_name="numbers")
    op.drop_column("numbers", "ring_group_id")
    op.drop_column("numbers", "line_id")
    op.drop_column("active_calls", "hunt_remaining")
    op.drop_column("active_calls", "ring_group_id")
    op.drop_index("ix_ring_group_members_line_id", table_name="ring_group_members")
    op.drop_table("ring_group_members")
    op.drop_index("ix_ring_groups_customer_id", table_name="ring_groups")
    op.drop_table("ring_groups")
    op.execute("DROP TYPE ring_strategy")
