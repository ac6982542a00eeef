"""edge location: the edge's registrations survive a Kamailio restart (issue 19)

Revision ID: 0034_edge_location
Revises: 0033_edge_purges
Create Date: 2026-12-03

In the clustered shape Kamailio is the registrar (docs/cluster.md). Its registrations lived in
its memory only (usrloc ``db_mode`` 0): restarting the edge (an upgrade, a configuration change,
a crash) left every phone unreachable until it registered again, up to an hour later. Kamailio
now writes each registration through to this table as it saves it (``db_mode`` 1) and loads the
table when it starts.

The table is Kamailio 5.6's ``location`` (usrloc table version 9, from kamailio-postgres-modules'
usrloc-create.sql), named ``kamailio_location`` like the other objects Kamailio reads. It is the
one table Kamailio writes, as a role of its own, ``centrex_edge`` (created by the PostgreSQL
sandbox, or by the operator): SELECT, INSERT, UPDATE and DELETE on this table and nothing else.
Kamailio's reads of lines, trunks, bans and purges stay with the read-only ``centrex_asterisk``.
Kamailio checks the table's version in ``version`` (the table of that name Kamailio's schema has:
one row here, readable by the edge role only).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0034_edge_location"
down_revision: str | Sequence[str] | None = "0033_edge_purges"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "centrex_edge"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE kamailio_location (
            id SERIAL PRIMARY KEY NOT NULL,
            ruid VARCHAR(64) DEFAULT '' NOT NULL,
            username VARCHAR(64) DEFAULT '' NOT NULL,
            domain VARCHAR(64) DEFAULT NULL,
            contact VARCHAR(512) DEFAULT '' NOT NULL,
            received VARCHAR(128) DEFAULT NULL,
            path VARCHAR(512) DEFAULT NULL,
            expires TIMESTAMP WITHOUT TIME ZONE DEFAULT '2030-05-28 21:32:15' NOT NULL,
            q REAL DEFAULT 1.0 NOT NULL,
            callid VARCHAR(255) DEFAULT 'Default-Call-ID' NOT NULL,
            cseq INTEGER DEFAULT 1 NOT NULL,
            last_modified TIMESTAMP WITHOUT TIME ZONE DEFAULT '2000-01-01 00:00:01' NOT NULL,
            flags INTEGER DEFAULT 0 NOT NULL,
            cflags INTEGER DEFAULT 0 NOT NULL,
            user_agent VARCHAR(255) DEFAULT '' NOT NULL,
            socket VARCHAR(64) DEFAULT NULL,
            methods INTEGER DEFAULT NULL,
            instance VARCHAR(255) DEFAULT NULL,
            reg_id INTEGER DEFAULT 0 NOT NULL,
            server_id INTEGER DEFAULT 0 NOT NULL,
            connection_id INTEGER DEFAULT 0 NOT NULL,
            keepalive INTEGER DEFAULT 0 NOT NULL,
            partition INTEGER DEFAULT 0 NOT NULL,
            CONSTRAINT kamailio_location_ruid_idx UNIQUE (ruid)
        )
        """
    )
    op.execute(
        "CREATE INDEX kamailio_location_account_contact_idx"
        " ON kamailio_location (username, domain, contact)"
    )
    op.execute("CREATE INDEX kamailio_location_expires_idx ON kamailio_location (expires)")
    op.execute(
        "CREATE INDEX kamailio_location_connection_idx"
        " ON kamailio_location (server_id, connection_id)"
    )
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS version (
            id SERIAL PRIMARY KEY NOT NULL,
            table_name VARCHAR(32) NOT NULL,
            table_version INTEGER DEFAULT 0 NOT NULL,
            CONSTRAINT version_table_name_idx UNIQUE (table_name)
        )
        """
    )
    op.execute("INSERT INTO version (table_name, table_version) VALUES ('kamailio_location', 9)")
    op.execute(
        f"""
        DO $$ BEGIN
          IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
            GRANT SELECT, INSERT, UPDATE, DELETE ON kamailio_location TO {ROLE};
            GRANT USAGE, SELECT ON SEQUENCE kamailio_location_id_seq TO {ROLE};
            GRANT SELECT ON version TO {ROLE};
          END IF;
        END $$
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE kamailio_location")
    op.execute("DELETE FROM version WHERE table_name = 'kamailio_location'")
    op.execute(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM version) THEN DROP TABLE version; END IF; END $$"
    )
