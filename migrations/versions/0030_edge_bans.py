"""Edge bans in sip_bans (issue 19, docs/cluster.md "Bans at the edge").

Kamailio records its own bans (flood, failed digests) and reads every ban in force, both as
Asterisk's read-only role ``centrex_asterisk``, which may only:

- call ``edge_ban(address, rule, failures, seconds, node)``: a SECURITY DEFINER function that
  inserts one row into sip_bans after checking every argument (the rule is one of two fixed
  texts, the address is an inet, the lengths are bounded), and nothing else. The role gets no
  INSERT on the table: whatever Kamailio's configuration does, it cannot write another column
  or another table.
- read ``kamailio_edge_bans``: one row per address with a ban in force (whoever issued it: the
  edge, the guard or the API), in the columns Kamailio's htable module loads at start
  (key_name, key_type, value_type, key_value, expires as a Unix time).

Revision ID: 0030_edge_bans
Revises: 0029_contract_life
"""

from alembic import op

revision = "0030_edge_bans"
down_revision = "0029_contract_life"
branch_labels = None
depends_on = None

ROLE = "centrex_asterisk"


def upgrade() -> None:
    op.execute(
        """
        CREATE VIEW kamailio_edge_bans AS
        SELECT host(address) AS key_name,
               0 AS key_type,
               1 AS value_type,
               '0'::text AS key_value,
               ceil(extract(epoch FROM max(until)))::int AS expires
          FROM sip_bans
         WHERE lifted_at IS NULL AND until > now()
         GROUP BY address
        """
    )
    # One ban in force per address: several edge workers (or a retried insert) may report the
    # same address at once; the advisory lock makes the check-then-insert one step per address.
    op.execute(
        """
        CREATE FUNCTION edge_ban(p_address inet, p_rule text, p_failures int, p_seconds int,
                                 p_node text) RETURNS int
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        BEGIN
          IF p_rule NOT IN ('edge: flood', 'edge: failed digests') THEN
            RAISE EXCEPTION 'edge_ban: unknown rule';
          END IF;
          IF p_seconds NOT BETWEEN 1 AND 604800 OR p_failures NOT BETWEEN 0 AND 1000000
             OR p_node !~ '^[A-Za-z0-9.:@_-]{1,64}$' THEN
            RAISE EXCEPTION 'edge_ban: argument out of range';
          END IF;
          PERFORM pg_advisory_xact_lock(hashtext('edge_ban:' || host(p_address)));
          IF EXISTS (SELECT 1 FROM sip_bans WHERE address = p_address AND lifted_at IS NULL
                       AND until > now()) THEN
            RETURN 0;
          END IF;
          INSERT INTO sip_bans (id, address, banned_at, until, failures, rule, evidence, node)
          VALUES (gen_random_uuid(), p_address, now(), now() + make_interval(secs => p_seconds),
                  p_failures, p_rule, '{"events": []}'::jsonb, p_node);
          RETURN 1;
        END $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION edge_ban(inet, text, int, int, text) FROM PUBLIC")
    op.execute(
        f"""
        DO $$ BEGIN
          IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
            GRANT SELECT ON kamailio_edge_bans TO {ROLE};
            GRANT EXECUTE ON FUNCTION edge_ban(inet, text, int, int, text) TO {ROLE};
          END IF;
        END $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS edge_ban(inet, text, int, int, text)")
    op.execute("DROP VIEW IF EXISTS kamailio_edge_bans")
