"""a line's policy level is read from the restrictions in force, not kept on the line

Revision ID: 0010_policy_at_admission
Revises: 0009_policy
Create Date: 2026-12-03

Until now ``lines.policy_level`` held a copy of the strictest restriction in force on a line or
its customer, recomputed by ``centrex_refresh_policy_levels`` when a restriction changed. A line
created *after* its customer was suspended started at ``none`` and placed ordinary calls: the
copy was only as good as every path that writes a line remembering to refresh it. The copy is
gone: ``centrex_policy_level(line, customer)`` reads the restrictions in force, and the daemon
calls it in the statement that looks the line up (same round trip), so a restriction binds
every line of its target, present or future, from the moment it commits.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_policy_at_admission"
down_revision: str | Sequence[str] | None = "0009_policy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POLICY_LEVEL = """
CREATE FUNCTION centrex_policy_level(p_line uuid, p_customer uuid) RETURNS text
LANGUAGE sql STABLE AS $$
    -- target_id = ANY(...) lets ix_restrictions_in_force find both kinds in one index scan.
    SELECT coalesce((
        SELECT r.level FROM policy_restrictions r
        WHERE r.lifted_at IS NULL AND r.target_id = ANY(ARRAY[p_line, p_customer])
          AND ((r.target_type = 'line' AND r.target_id = p_line)
               OR (r.target_type = 'customer' AND r.target_id = p_customer))
        ORDER BY centrex_policy_rank(r.level) DESC LIMIT 1), 'none')
$$
"""

# As in 0009, without refreshing a copy: the restriction is in force once it commits.
RAISE_SUSPICION_V2 = """
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
    END IF;
    RETURN sid;
END;
$$
"""


def _revision_0009():  # type: ignore[no-untyped-def]
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "revision_0009", Path(__file__).with_name("0009_policy.py")
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    op.create_index(
        "ix_restrictions_in_force", "policy_restrictions", ["target_id"],
        postgresql_where=sa.text("lifted_at IS NULL"),
    )  # fmt: skip
    op.execute(POLICY_LEVEL)
    op.execute("DROP FUNCTION centrex_raise_suspicion")
    op.execute(RAISE_SUSPICION_V2)
    op.execute("DROP FUNCTION centrex_refresh_policy_levels")
    op.drop_column("lines", "policy_level")


def downgrade() -> None:
    old = _revision_0009()
    op.add_column(
        "lines",
        sa.Column("policy_level", sa.String(length=16), server_default="none", nullable=False),
    )
    refresh, raise_suspicion = old.FUNCTIONS[1], old.FUNCTIONS[2]
    op.execute(refresh)
    op.execute("DROP FUNCTION centrex_raise_suspicion")
    op.execute(raise_suspicion)
    op.execute("SELECT centrex_refresh_policy_levels(id) FROM customers")
    op.execute("DROP FUNCTION centrex_policy_level")
    op.drop_index("ix_restrictions_in_force", table_name="policy_restrictions")
