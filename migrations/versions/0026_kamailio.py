"""Kamailio's view of line credentials (issue 19, docs/cluster.md).

In the clustered shape Kamailio is the registrar: its auth_db module checks a REGISTER's digest
against the line's HA1 (the same md5(user:realm:password) Asterisk's realtime ps_auths serves),
read through this view by the read-only role Asterisk uses. Deleted lines are not in it.

Revision ID: 0026_kamailio
Revises: 0025_invoice_items
"""

from alembic import op

revision = "0026_kamailio"
down_revision = "0025_invoice_items"
branch_labels = None
depends_on = None

ROLE = "centrex_asterisk"


def upgrade() -> None:
    op.execute(
        """
        CREATE VIEW kamailio_subscriber AS
        SELECT l.sip_username::text AS username,
               l.sip_realm::text AS domain,
               l.sip_ha1::text AS ha1
          FROM lines l
         WHERE l.deleted_at IS NULL
        """
    )
    op.execute(
        f"""
        DO $$ BEGIN
          IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
            GRANT SELECT ON kamailio_subscriber TO {ROLE};
          END IF;
        END $$
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS kamailio_subscriber")
