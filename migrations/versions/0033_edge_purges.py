"""edge purges: registrations made before a line's credentials were renewed leave the edge (issue 19)

Revision ID: 0033_edge_purges
Revises: 0032_edge_trunks
Create Date: 2026-12-03

In the clustered shape Kamailio is the registrar (docs/cluster.md). Renewing a line's credentials
removes the devices registered with the old ones from Asterisk's nodes (the one-node shape), but
the edge would keep them until their registration expires: the old device could no longer
register or call, yet calls to the line would still ring it. Kamailio reads this view every
``CENTREX_EDGE_BAN_SYNC_S`` (route PURGESYNC in deploy/kamailio/kamailio.cfg.j2) and unregisters
each contact of the line last refreshed in a second before the renewal's (``purge_before``,
epoch seconds; Kamailio knows a contact's last refresh to the second): a device registered with
the new password is refreshed after it and stays. A contact refreshed in the very second of the
renewal is ambiguous and is kept (an old device that refreshed in that second stays until its
registration expires; it can neither refresh it nor call). Applying a row again is harmless, so
the view needs no bookkeeping and the edge's role stays read-only.

Renewals stay listed for 3,660 s: the edge's longest registration (registrar ``max_expires``
3,600 s) plus a minute. An edge started (or unable to read the view) within that window still
removes what it must; a registration older than that has expired anyway.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0033_edge_purges"
down_revision: str | Sequence[str] | None = "0032_edge_trunks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "centrex_asterisk"


def upgrade() -> None:
    op.execute(
        """
        CREATE VIEW kamailio_registration_purges AS
        SELECT l.sip_username::text AS username,
               max(floor(extract(epoch FROM r.created_at)))::bigint AS purge_before
          FROM credential_renewals r
          JOIN lines l ON l.id = r.line_id
         WHERE r.created_at > now() - interval '3660 seconds'
           AND l.deleted_at IS NULL
         GROUP BY l.sip_username
        """
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_credential_renewals_created_at"
        " ON credential_renewals (created_at)"
    )
    op.execute(
        f"""
        DO $$ BEGIN
          IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
            GRANT SELECT ON kamailio_registration_purges TO {ROLE};
          END IF;
        END $$
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS kamailio_registration_purges")
    op.execute("DROP INDEX IF EXISTS ix_credential_renewals_created_at")
